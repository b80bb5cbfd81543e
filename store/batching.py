"""Group commit in two stages: many concurrent intakes share one transaction, none is
answered before it commits, and the next batch is planned while this one is written.

Callers `submit` requests and await their results. One task takes everything pending as
a batch and runs it through the backend's two stages:

- `prepare(batch)`: plan it (the state machine, ids, rows) on the event loop;
- `finish(prepared)`: write and commit it (in the database's writer).

While batch k is being written and committed, batch k+1 is already prepared, so Python
work and database work overlap; up to `in_flight` batches are being written at a time
(the backend commits them in order, each planned on top of those before it). If a write
fails, every batch in flight behind it is waited out (planned on a write that did not
happen, the backend refuses them unwritten), the backend's `abandon()` drops what it
assumed about uncommitted state, and their requests are retried one by one (so one bad
request cannot fail its neighbours); a batch prepared on top of them is prepared again.
A write that raises `PlanAgain` (its plan rested on something the database contradicts;
the backend has learned better) is not a failure: the same batch is prepared and written
once more.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog

Req = TypeVar("Req")
Prep = TypeVar("Prep")
Res = TypeVar("Res")

log = structlog.get_logger(__name__)


class PlanAgain(Exception):
    """Raised by `finish`: nothing was written, and the batch must be prepared again."""


@dataclass(slots=True)
class _Group(Generic[Req, Res]):
    """Requests submitted together, answered together (one future, not one per request)."""

    requests: Sequence[Req]
    future: asyncio.Future[list[Res]]


class GroupCommitter(Generic[Req, Prep, Res]):
    def __init__(
        self,
        prepare: Callable[[Sequence[Req]], Awaitable[Prep]],
        finish: Callable[[Prep], Coroutine[Any, Any, Sequence[Res]]],
        abandon: Callable[[], Awaitable[None]],
        max_batch: int = 1024,
        in_flight: int = 1,
    ) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self._prepare, self._finish, self._abandon = prepare, finish, abandon
        self._max_batch, self._in_flight = max_batch, in_flight
        self._pending: deque[_Group[Req, Res]] = deque()
        self._writing: deque[tuple[asyncio.Task[Sequence[Res]], list[_Group[Req, Res]]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    def start(self) -> None:
        self._closing = False
        self._event_loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="store-group-commit")

    async def submit(self, request: Req) -> Res:
        return (await self._submit((request,)))[0]

    async def submit_many(self, requests: Sequence[Req]) -> list[Res]:
        """Submit in order, committed in one batch where possible; results in the same
        order. If one fails, the others are still committed and the failure is raised."""
        return await self._submit(requests)

    def _submit(self, requests: Sequence[Req]) -> asyncio.Future[list[Res]]:
        loop = self._event_loop
        if self._closing or self._task is None or loop is None:
            raise RuntimeError("the store is not open")
        # Not `_Group[Req, Res](...)`: calling a subscripted generic goes through typing's
        # machinery, 1.8 us against 0.2 us, once per submit.
        group: _Group[Req, Res] = _Group(requests, loop.create_future())
        self._pending.append(group)
        self._wake.set()
        return group.future

    async def close(self) -> None:
        """Commit what is pending, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            # asyncio.wait: neither raises what the task raised nor swallows a cancel of
            # the caller (suppressing CancelledError here would).
            await asyncio.wait({self._task})
            self._task = None

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:  # never leave a caller waiting on a committer that is gone
            self._closing = True
            gone = RuntimeError("the store's writer stopped")
            groups = [*self._pending, *(group for _, batch in self._writing for group in batch)]
            self._pending.clear()
            self._writing.clear()
            for group in groups:
                if not group.future.done():
                    group.future.set_exception(gone)

    async def _loop(self) -> None:
        while True:
            if self._pending:
                await self._pipeline(self._take())
            elif self._writing and not self._closing:
                await self._written_or_woken()
            elif self._closing:
                while self._writing:
                    await self._settle()
                return
            else:
                self._wake.clear()
                await self._wake.wait()

    def _take(self) -> list[_Group[Req, Res]]:
        """Whole groups, oldest first, up to `max_batch` requests (always at least one)."""
        batch = [self._pending.popleft()]
        size = len(batch[0].requests)
        while self._pending and size + len(self._pending[0].requests) <= self._max_batch:
            size += len(self._pending[0].requests)
            batch.append(self._pending.popleft())
        return batch

    async def _written_or_woken(self) -> None:
        """Idle until the oldest batch in flight is done (answer it) or new work arrives."""
        self._wake.clear()
        waiter = asyncio.create_task(self._wake.wait(), name="store-wake")
        try:
            await asyncio.wait({self._writing[0][0], waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if self._writing and self._writing[0][0].done():
            await self._settle()

    async def _pipeline(self, batch: list[_Group[Req, Res]]) -> None:
        """Prepare `batch` while earlier batches are written, then start writing it."""
        requests = [request for group in batch for request in group.requests]
        try:
            prepared = await self._prepare(requests)
        except Exception:
            while self._writing:
                await self._settle()
            await self._one_by_one(batch)
            return
        held = True
        while len(self._writing) >= self._in_flight:
            held = await self._settle() and held
        if not held:
            try:
                prepared = await self._prepare(requests)
            except Exception:
                await self._one_by_one(batch)
                return
        self._writing.append((asyncio.create_task(self._finish(prepared), name="store-write"), batch))

    async def _settle(self) -> bool:
        """Wait for the oldest batch in flight and answer its callers; False if its plan
        did not hold (so a batch prepared on top of it must be prepared again)."""
        if not self._writing:
            return True
        task, batch = self._writing.popleft()
        try:
            results = await task
        except Exception as exc:
            behind = await self._wait_out()
            await self._abandon()
            if isinstance(exc, PlanAgain):
                await self._rewrite(batch)
            else:
                await self._one_by_one(batch)
            for later in behind:
                await self._one_by_one(later)
            return False
        self._answer(batch, results)
        return True

    async def _wait_out(self) -> list[list[_Group[Req, Res]]]:
        """After a failed write: wait for every batch in flight behind it, answer those
        that were written anyway, and return those that were not (to be retried)."""
        failed = []
        while self._writing:
            task, batch = self._writing.popleft()
            try:
                results = await task
            except Exception:
                failed.append(batch)
            else:
                self._answer(batch, results)
        return failed

    async def _rewrite(self, batch: list[_Group[Req, Res]]) -> None:
        try:
            results = await self._write([request for group in batch for request in group.requests])
        except Exception:
            await self._abandon()
            await self._one_by_one(batch)
            return
        self._answer(batch, results)

    async def _write(self, requests: Sequence[Req]) -> Sequence[Res]:
        """Prepare and write `requests` now, once more if the plan did not hold."""
        try:
            return await self._finish(await self._prepare(requests))
        except PlanAgain:
            await self._abandon()
            return await self._finish(await self._prepare(requests))

    @staticmethod
    def _answer(batch: list[_Group[Req, Res]], results: Sequence[Res]) -> None:
        start = 0
        for group in batch:
            end = start + len(group.requests)
            if not group.future.done():
                group.future.set_result([results[start]] if end == start + 1 else list(results[start:end]))
            start = end

    async def _one_by_one(self, batch: list[_Group[Req, Res]]) -> None:
        for group in batch:
            results: list[Res] = []
            failure: Exception | None = None
            for request in group.requests:
                try:
                    results.append((await self._write([request]))[0])
                except Exception as exc:
                    await self._abandon()
                    log.exception("intake_commit_failed")
                    failure = failure or RuntimeError(f"the store could not commit: {exc}")
            if group.future.done():
                continue
            if failure is not None:
                group.future.set_exception(failure)
            else:
                group.future.set_result(results)
