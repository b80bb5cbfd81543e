"""Hearing the other replicas: LISTEN on a connection of its own, polling as the backstop.

Every transaction that appends to the log or changes outbox work sends a NOTIFY
(store/postgres/writes.py); this wakes this replica's waiters for it (`/api/events`
streams, the outbox worker). Its own commits, which come back too, are skipped by the
origin at the end of their payload: it woke its waiters as it committed. A notification
sent while the connection is down is lost, so after every (re)connect both wake-ups
fire, and once a second the log's last sequence number is read and a change fires the
append wake-up: nothing waits longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog

from jobtrail.core.retry import Backoff
from jobtrail.store.postgres.reads import LAST_SEQ
from jobtrail.store.postgres.writes import APPENDED, OUTBOX

log = structlog.get_logger(__name__)

BACKSTOP = 1.0
Heard = Callable[..., None]  # (appended=bool, outbox=bool)


class Notifications:
    def __init__(self, dsn: str, heard: Heard, origin: str, backstop: float = BACKSTOP) -> None:
        """`origin`: this replica's writes' name in their payloads (writes.ORIGIN)."""
        self.dsn, self.heard, self.origin, self.backstop = dsn, heard, origin, backstop
        self.connected = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="postgres-listen"),
            asyncio.create_task(self._poll(), name="postgres-backstop"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if payload.rpartition(" ")[2] == self.origin:
            return  # this replica's own commit: it woke its waiters when it committed
        self.heard(appended=channel == APPENDED, outbox=channel == OUTBOX)

    async def _listen(self) -> None:
        failures = 0
        backoff = Backoff(base=0.5, cap=10.0)
        first = True
        while True:
            conn = None
            closed = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5)
                conn.add_termination_listener(_setter(closed))
                await conn.add_listener(APPENDED, self._notified)
                await conn.add_listener(OUTBOX, self._notified)
                self.connected, failures = True, 0
                if not first:
                    self.heard(appended=True, outbox=True)  # what was sent while we were away
                first = False
                await closed.wait()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("postgres_listen_failed", error=str(exc) or type(exc).__name__)
            finally:
                self.connected = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            await asyncio.sleep(backoff.delay(failures))
            failures += 1

    async def _poll(self) -> None:
        """The backstop: once per `backstop` seconds, the log's end; a change wakes."""
        last: int | None = None
        conn = None
        try:
            while True:
                await asyncio.sleep(self.backstop)
                try:
                    if conn is None or conn.is_closed():
                        conn = await asyncpg.connect(self.dsn, timeout=5)
                    seq = await conn.fetchval(LAST_SEQ, timeout=5)
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    conn = None
                    continue
                if last is not None and seq != last:
                    self.heard(appended=True, outbox=False)
                last = seq
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    return lambda _: event.set()
