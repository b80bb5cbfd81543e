"""jobtrail as `jobtrail serve` runs it (its connection class, a real SQLite file, the
provider simulators it submits to), on a thread of its own, for a fuzzer that sends raw
bytes from another; and what is checked of every answer:

- an answer arrives (a status line) for every request;
- no status is 5xx;
- every error is JSON: `{"error": ..., "message": ...}`;
- every webhook request answered 200, 400, 401, 413 or 415 by a route is kept as a
  delivery (found by its `X-Fuzz-Id`); those the HTTP parser refused before any route are
  counted apart;
- at the end, `PRAGMA integrity_check` of the database says ok.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from bench.fuzz.requests import Keys, Shot
from jobtrail.core.settings import load
from jobtrail.receiver.app import create_app
from jobtrail.receiver.errors import REFUSAL_SENTENCES
from jobtrail.receiver.keys import METRICS
from jobtrail.receiver.protocol import Runner
from jobtrail.receiver.serve import store_for
from jobtrail.simulators.cluster import Cluster
from jobtrail.store.base import Store

KEYS = Keys("fuzz-webhook-token-0123456789", "fuzz-api-token-0123456789", "")
KEPT_STATUSES = (200, 400, 401, 413, 415)


@dataclass
class Answer:
    status: int | None  # None: no answer (closed, reset or silent)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""


class Target:
    """`with Target(data_dir) as target:` jobtrail on `target.port` until the block ends."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-target", daemon=True)
        self.port = 0
        self.keys = KEYS
        self._app: web.Application | None = None
        self._store: Store | None = None
        self._runner: Runner | None = None
        self._cluster: Cluster | None = None

    def __enter__(self) -> Target:
        self.thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    async def _start(self) -> None:
        cluster = Cluster.build()
        await cluster.start()
        self._cluster = cluster
        env = {
            **{k: v for k, v in cluster.environment().items() if not k.startswith(("OXEN", "PIXAZO"))},
            "JOBTRAIL_DATA_DIR": str(self.data_dir),
            "JOBTRAIL_WEBHOOK_TOKEN": KEYS.webhook_token,
            "JOBTRAIL_API_TOKEN": KEYS.api_token,
            "JOBTRAIL_REFUSED_BYTES_PER_MINUTE": str(2**30),  # keep every refusal: each is checked
            "JOBTRAIL_MAX_BODY_BYTES": str(64 * 1024),
        }
        self.keys = Keys(KEYS.webhook_token, KEYS.api_token, env["APIFRAME_API_KEY"])
        settings = load(None, env)
        self._store = store_for(settings)
        await self._store.open()
        self._app = create_app(settings, self._store)
        self._runner = Runner(self._app, self._app[METRICS].refused_http, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._store is not None:
            await self._store.close()
        if self._cluster is not None:
            await self._cluster.stop()

    def kept_ids(self) -> set[int]:
        """The X-Fuzz-Id of every delivery kept."""

        async def read() -> set[int]:
            assert self._store is not None
            found: set[int] = set()
            for stored in await self._store.deliveries(limit=10_000_000):
                value = stored.delivery.headers.get("X-Fuzz-Id", "")
                if value.isascii() and value.isdigit():
                    found.add(int(value))
            return found

        result: set[int] = self.call(read())
        return result

    def integrity(self) -> str:
        """`PRAGMA integrity_check` of the database (call after the block ends)."""
        with sqlite3.connect(self.data_dir / "jobtrail.db") as db:
            return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def send(port: int, raw: bytes, *, half_close: bool, head: bool, guard: float = 15.0) -> Answer:
    """Send `raw` on a new connection and read one answer. `guard` bounds the wait only."""
    with socket.create_connection(("127.0.0.1", port), timeout=guard) as sock:
        try:
            sock.sendall(raw)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse and close before taking it all: its answer is read below
        try:
            return _read(sock, head)
        except TimeoutError:
            return Answer(None, error="no answer within the guard")
        except OSError as exc:
            return Answer(None, error=f"{type(exc).__name__}: {exc}")


def _read(sock: socket.socket, head: bool) -> Answer:
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return Answer(None, error=f"closed after {len(buffer)} bytes")
            buffer += chunk
        top, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if status >= 200:
            break  # a 100 Continue is followed by the real answer
    if head or status in (204, 304) or headers.get("content-type", "").startswith("text/event-stream"):
        return Answer(status, headers)
    if "content-length" in headers:
        size = int(headers["content-length"])
        while len(buffer) < size:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
        return Answer(status, headers, buffer[:size])
    while b"0\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
    return Answer(status, headers, buffer)


def _refused_by_parser(answer: Answer) -> bool:
    try:
        return orjson.loads(answer.body).get("message") in REFUSAL_SENTENCES
    except (ValueError, AttributeError):
        return False


@dataclass
class Tally:
    """Counts of what was answered, and every problem with the request that caused it."""

    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    to_keep: dict[int, bytes] = field(default_factory=dict)
    sent: int = 0

    def shoot(self, target: Target, shot: Shot) -> list[str]:
        """Send one shot and check its answer; the problems found (also kept in `problems`)."""
        self.sent += 1
        fuzz_id = self.sent
        raw = shot.numbered(fuzz_id)
        answer = send(target.port, raw, half_close=shot.half_close, head=shot.head)
        by_parser = _refused_by_parser(answer)
        found = self._judge(answer, shot.head)
        self.counts["requests"] += 1
        self.counts["no answer" if answer.status is None else f"{answer.status // 100}xx"] += 1
        if by_parser:  # or in reading the body, with the same words: not checked for keeping
            self.counts["refused by the HTTP parser"] += 1
        elif shot.webhook and answer.status in KEPT_STATUSES:
            self.to_keep[fuzz_id] = raw
        for problem in found:
            self.problems.append(f"{problem}: {raw[:300]!r}")
        return found

    @staticmethod
    def _judge(answer: Answer, head: bool) -> list[str]:
        if answer.status is None:
            return [f"no answer ({answer.error})"]
        found = []
        if answer.status >= 500:
            found.append(f"HTTP {answer.status}")
        if answer.status >= 400 and not head:
            try:
                doc = orjson.loads(answer.body)
                if not isinstance(doc, dict) or set(doc) != {"error", "message"}:
                    raise ValueError(doc)
            except ValueError:
                found.append(f"HTTP {answer.status} without a JSON error: {answer.body[:120]!r}")
        return found

    def unkept(self, kept: set[int]) -> list[str]:
        """Webhook requests a route answered but the store does not hold."""
        self.counts["webhooks to keep"] = len(self.to_keep)
        missing = [f"not kept: {raw[:300]!r}" for fuzz_id, raw in self.to_keep.items() if fuzz_id not in kept]
        self.counts["webhooks not kept"] = len(missing)
        return missing
