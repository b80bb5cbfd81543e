"""The end of the log, read once per process and shared by every `/api/events` stream.

`Tail` runs while at least one stream is open: it reads new events, encodes each once as
an SSE block, and keeps the latest in a ring (at most `RING_BYTES`). A stream pulls from
the ring at its own pace, and from the store while it is further behind than the ring
reaches; so a stream holds no copy of what its client has not read yet, and 250 streams
cost one read and one encoding per batch, not 250.

No append is missed: the tail reads the store's append count before each read and, if
the read found nothing, waits only while that count has not moved. It reads only while a
stream waits for it: streams busy catching up, or stuck writing to a client that does not
read, cost no reads at all. Without appends it beats every `HEARTBEAT_SECONDS`, and each
waiting stream writes a comment line.

`close()` (the app's shutdown) ends every stream at once: waiting streams wake and return,
and the connections of streams stuck writing to a client that does not read are aborted.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import structlog

from jobtrail.core.model import Event
from jobtrail.store.base import Store, StoreError

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 15.0
RING_BYTES = 8 * 1024 * 1024
READ_BATCH = 500
WRITE_BYTES = 16 * 1024  # one write to a client, at most (one event may be larger)


def encode(event: Event) -> bytes:
    """One event as an SSE block: `id:` its sequence number, `event:` its type."""
    return f"id: {event.seq}\nevent: {event.type}\ndata: {json.dumps(event.to_json())}\n\n".encode()


JobKey = tuple[str, str]
Wanted = Callable[[JobKey], bool]  # which jobs' events a filtered stream takes


@dataclass(slots=True)
class _Batch:
    seqs: list[int]
    blocks: list[bytes]
    size: int
    keys: list[JobKey]  # each event's (provider, job id), for filtered streams


class Tail:
    def __init__(
        self, store: Store, *, heartbeat: float = HEARTBEAT_SECONDS, ring_bytes: int = RING_BYTES
    ) -> None:
        self.store, self.heartbeat, self.ring_bytes = store, heartbeat, ring_bytes
        self.position: int | None = None  # the last sequence number read; None while stopped
        self.beats = 0
        self.closed = False
        self._ring: deque[_Batch] = deque()
        self._ring_size = 0
        self._changed = asyncio.Event()
        self._waiting = 0
        self._wanted = asyncio.Event()  # set while a stream waits
        self._followers: dict[object, asyncio.Transport | None] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def followers(self) -> int:
        return len(self._followers)

    async def follow(self, token: object, transport: asyncio.Transport | None) -> None:
        """Count a stream in (its transport is aborted by `close`); starts the tail."""
        self._followers[token] = transport
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-tail")
        while self.position is None and not self.closed:
            await self.wait()

    def unfollow(self, token: object) -> None:
        """Count a stream out; the last one out stops the tail and empties the ring."""
        self._followers.pop(token, None)
        if not self._followers and self._task is not None:
            self._task.cancel()
            self._task = None
            self.position = None
            self._ring.clear()
            self._ring_size = 0

    def after(self, seq: int, wanted: Wanted | None = None) -> tuple[bytes, int] | None:
        """The encoded events after `seq` the ring holds, up to about WRITE_BYTES, with
        the last one's number; (b"", seq) when there is nothing newer; None when `seq` is
        older than the ring reaches (read the store). With `wanted`, only those jobs'
        events, and the number is the last one looked at (sent or not)."""
        if self.position is None:
            return None
        if seq >= self.position:
            return b"", seq
        if not self._ring or seq < self._ring[0].seqs[0] - 1:
            return None
        out: list[bytes] = []
        size, last = 0, seq
        for batch in self._ring:
            if batch.seqs[-1] <= last:
                continue
            start = bisect.bisect_right(batch.seqs, last)
            for n in range(start, len(batch.seqs)):
                if wanted is not None and not wanted(batch.keys[n]):
                    last = batch.seqs[n]
                    continue
                out.append(batch.blocks[n])
                size += len(batch.blocks[n])
                last = batch.seqs[n]
                if size >= WRITE_BYTES:
                    return b"".join(out), last
        return b"".join(out), last

    async def wait(self) -> None:
        """Until the tail moves on, beats, or closes."""
        if self.closed:
            return
        changed = self._changed
        self._waiting += 1
        self._wanted.set()
        try:
            await changed.wait()
        finally:
            self._waiting -= 1

    def close(self) -> None:
        """End every stream now (the app is stopping)."""
        self.closed = True
        self._wake()
        for transport in list(self._followers.values()):
            if transport is not None:
                transport.abort()
        if self._task is not None:
            self._task.cancel()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _run(self) -> None:
        while True:
            try:
                if self.position is None:
                    self.position = await self.store.last_seq()
                    self._wake()
                await self._follow_the_log()
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                log.warning("event_tail_backing_off", error=str(exc))
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("event_tail_failed")
                await asyncio.sleep(1.0)

    async def _follow_the_log(self) -> None:
        assert self.position is not None
        while True:
            if not self._waiting:
                self._wanted.clear()
                await self._wanted.wait()
            seen = self.store.appends
            events = await self.store.events_after(self.position, READ_BATCH)
            if events:
                self._keep(events)
                continue
            if not await self.store.wait_for_append(self.heartbeat, since=seen):
                self.beats += 1
                self._wake()

    def _keep(self, events: Sequence[Event]) -> None:
        blocks = [encode(e) for e in events]
        keys = [(e.provider, e.job_id) for e in events]
        batch = _Batch([e.seq for e in events], blocks, sum(map(len, blocks)), keys)
        self._ring.append(batch)
        self._ring_size += batch.size
        while self._ring_size > self.ring_bytes and len(self._ring) > 1:
            self._ring_size -= self._ring.popleft().size
        self.position = batch.seqs[-1]
        self._wake()


@contextlib.asynccontextmanager
async def following(tail: Tail, transport: asyncio.Transport | None) -> AsyncIterator[Tail]:
    """One stream's membership of the tail, for as long as the stream runs."""
    token = object()
    try:
        await tail.follow(token, transport)
        yield tail
    finally:
        tail.unfollow(token)
