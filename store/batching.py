"""Group commit in two stages: many concurrent intakes share one transaction, none is
answered before it commits, and the next batch is planned while this one is written.

Callers `submit` requests and await their results. One task takes everything pending as
a batch and runs it through the backend's two stages:

- `prepare(batch)`: plan it (the state machine, rows) on the event loop;
- `finish(prepared)`: write and commit it (in the database's writer).

While batch k is being written and committed, batch k+1 is already prepared, so Python
work and database work overlap; up to `in_flight` batches are being written at a time
(the backend commits them in order, each planned on top of those before it).

When a write fails:

- `StoreUnavailable` (the store cannot be reached, or the writer went away with it:
  `OutcomeUnknown`): its callers, and those of every batch sent behind it that failed
  the same way, get that error at once. Nothing is retried here: a store that is down
  would make every retry wait out its timeout, and a write whose outcome is unknown may
  have landed, so the retry belongs to the caller, whose intake is deduplicated.
- `PlanAgain` (its plan rested on something the database contradicts; the backend has
  learned better): the same batch is prepared and written again, up to `PLAN_AGAIN`
  times (each time the backend knows more; a retention walk, removing a page of jobs at
  a time, can contradict several plans in a row).
- anything else: every batch in flight behind it is waited out (planned on a write that
  did not happen, the backend refuses them unwritten), and their requests are retried
  one by one, so one bad request cannot fail its neighbours.

After each failure the backend's `abandon()` drops what it assumed about uncommitted
state. Bounds: at most `max_pending` requests (and `max_pending_bytes`, as the callers
weigh them) wait to be batched, beyond that `submit` raises `StoreBusy` at once; a
caller waits at most `write_timeout` seconds for its commit, then gets
`StoreUnavailable` (the write goes on and may still land). If the batching loop itself
dies of a bug, its callers get `StoreUnavailable` and the loop starts again.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog

from jobtrail.store.base import StoreBusy, StoreClosed, StoreError, StoreUnavailable

Req = TypeVar("Req")
Prep = TypeVar("Prep")
Res = TypeVar("Res")

log = structlog.get_logger(__name__)

WRITE_TIMEOUT = 10.0
MAX_PENDING = 20_000
MAX_PENDING_BYTES = 256 * 1024 * 1024
RESTART_PAUSE = 0.1
PLAN_AGAIN = 8  # times a batch is planned again in a row before its requests go one by one


class PlanAgain(Exception):
    """Raised by `finish`: nothing was written, and the batch must be prepared again."""


@dataclass(slots=True)
class _Group(Generic[Req, Res]):
    """Requests submitted together, answered together (one future, not one per request)."""

    requests: Sequence[Req]
    future: asyncio.Future[list[Res]]
    since: float
    weight: int


class GroupCommitter(Generic[Req, Prep, Res]):
    def __init__(
        self,
        prepare: Callable[[Sequence[Req]], Awaitable[Prep]],
        finish: Callable[[Prep], Coroutine[Any, Any, Sequence[Res]]],
        abandon: Callable[[], Awaitable[None]],
        max_batch: int = 1024,
        in_flight: int = 1,
        *,
        write_timeout: float = WRITE_TIMEOUT,
        max_pending: int = MAX_PENDING,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        observe: Callable[[float, int], None] | None = None,
    ) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self._prepare, self._finish, self._abandon_backend = prepare, finish, abandon
        self._max_batch, self._in_flight = max_batch, in_flight
        self._observe = observe  # told how long each batch's write took and its size
        self.write_timeout, self.max_pending, self.max_pending_bytes = (
            write_timeout,
            max_pending,
            max_pending_bytes,
        )
        self._pending: deque[_Group[Req, Res]] = deque()
        self._pending_count = self._pending_bytes = 0
        self._writing: deque[tuple[asyncio.Task[Sequence[Res]], list[_Group[Req, Res]]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.crashes = 0

    def start(self) -> None:
        self._closing = False
        self._event_loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="store-group-commit")
        self._watchdog = asyncio.create_task(self._expire(), name="store-write-timeouts")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing

    async def submit(self, request: Req, weight: int = 0) -> Res:
        """Submit one request; `weight`: the bytes it holds, for the queue's bound."""
        return (await self._submit((request,), weight))[0]

    async def submit_many(self, requests: Sequence[Req], weight: int = 0) -> list[Res]:
        """Submit in order, committed in one batch where possible; results in the same
        order. If one fails, the others are still committed and the failure is raised."""
        return await self._submit(requests, weight)

    def _submit(self, requests: Sequence[Req], weight: int) -> asyncio.Future[list[Res]]:
        loop = self._event_loop
        if self._closing or self._task is None or loop is None:
            raise StoreClosed("the store is not open")
        if self._pending_count + len(requests) > self.max_pending or (
            weight and self._pending_bytes + weight > self.max_pending_bytes
        ):
            raise StoreBusy(f"{self._pending_count} writes are waiting already; try again shortly")
        # Not `_Group[Req, Res](...)`: calling a subscripted generic goes through typing's
        # machinery, 1.8 us against 0.2 us, once per submit.
        group: _Group[Req, Res] = _Group(requests, loop.create_future(), loop.time(), weight)
        self._pending.append(group)
        self._pending_count += len(requests)
        self._pending_bytes += weight
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
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None

    async def _run(self) -> None:
        try:
            while True:
                try:
                    await self._loop()
                    return
                except Exception as exc:  # a bug: fail who waits, and carry on
                    self.crashes += 1
                    log.exception("store_committer_crashed")
                    self._fail_all(
                        StoreUnavailable(f"the store's writer failed ({type(exc).__name__}); retry")
                    )
                    await self._abandon()
                    await asyncio.sleep(RESTART_PAUSE)
        finally:  # never leave a caller waiting on a committer that is gone
            self._closing = True
            self._fail_all(StoreClosed("the store's writer stopped"))

    def _fail_all(self, error: StoreError) -> None:
        groups = [*self._pending, *(group for _, batch in self._writing for group in batch)]
        for task, _ in self._writing:
            task.cancel()  # only its wait: the writer finishes or refuses what it was sent
        self._pending.clear()
        self._writing.clear()
        self._pending_count = self._pending_bytes = 0
        for group in groups:
            if not group.future.done():
                group.future.set_exception(error)

    async def _expire(self) -> None:
        """Fail the callers that have waited longer than `write_timeout` for a commit."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.write_timeout / 4))
            limit = loop.time() - self.write_timeout
            groups = [group for _, batch in self._writing for group in batch]
            for group in (*groups, *self._pending):  # each oldest first
                if group.since > limit:
                    continue
                if not group.future.done():
                    group.future.set_exception(
                        StoreUnavailable(
                            f"no commit within {self.write_timeout:g} s; the write may still land, retry it"
                        )
                    )

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
        size, weight = len(batch[0].requests), batch[0].weight
        while self._pending and size + len(self._pending[0].requests) <= self._max_batch:
            group = self._pending.popleft()
            size += len(group.requests)
            weight += group.weight
            batch.append(group)
        self._pending_count -= size
        self._pending_bytes -= weight
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
        write = self._finish(prepared) if self._observe is None else self._timed(prepared, len(requests))
        self._writing.append((asyncio.create_task(write, name="store-write"), batch))

    async def _timed(self, prepared: Prep, size: int) -> Sequence[Res]:
        started = time.perf_counter()
        results = await self._finish(prepared)
        assert self._observe is not None
        self._observe(time.perf_counter() - started, size)
        return results

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
            if isinstance(exc, StoreUnavailable):
                self._fail(batch, exc)
            elif isinstance(exc, PlanAgain):
                await self._rewrite(batch)
            else:
                await self._one_by_one(batch)
            for later, error in behind:
                if isinstance(error, StoreUnavailable):
                    self._fail(later, error)
                else:
                    await self._one_by_one(later)
            return False
        self._answer(batch, results)
        return True

    async def _wait_out(self) -> list[tuple[list[_Group[Req, Res]], Exception]]:
        """After a failed write: wait for every batch in flight behind it, answer those
        that were written anyway, and return those that were not, with their error."""
        failed = []
        while self._writing:
            task, batch = self._writing.popleft()
            try:
                results = await task
            except Exception as exc:
                failed.append((batch, exc))
            else:
                self._answer(batch, results)
        return failed

    async def _abandon(self) -> None:
        """Let the backend drop what it assumed; a failure there is logged, never raised
        (the next write starts from what is committed either way)."""
        try:
            await self._abandon_backend()
        except Exception:
            log.exception("store_abandon_failed")

    async def _rewrite(self, batch: list[_Group[Req, Res]]) -> None:
        try:
            results = await self._write([request for group in batch for request in group.requests])
        except StoreUnavailable as exc:
            await self._abandon()
            self._fail(batch, exc)
            return
        except Exception:
            await self._abandon()
            await self._one_by_one(batch)
            return
        self._answer(batch, results)

    async def _write(self, requests: Sequence[Req]) -> Sequence[Res]:
        """Prepare and write `requests` now, again while the plan does not hold."""
        for _ in range(PLAN_AGAIN - 1):
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

    @staticmethod
    def _fail(batch: list[_Group[Req, Res]], error: Exception) -> None:
        for group in batch:
            if not group.future.done():
                group.future.set_exception(error)

    async def _one_by_one(self, batch: list[_Group[Req, Res]]) -> None:
        """Each request alone, so that one bad request fails alone; a store that is
        unavailable fails everything left at once."""
        for n, group in enumerate(batch):
            results: list[Res] = []
            failure: Exception | None = None
            for request in group.requests:
                try:
                    results.append((await self._write([request]))[0])
                except StoreUnavailable as exc:
                    await self._abandon()
                    self._fail(batch[n:], exc)
                    return
                except Exception as exc:
                    await self._abandon()
                    log.exception("intake_commit_failed")
                    failure = failure or _typed(exc)
            if group.future.done():
                continue
            if failure is not None:
                group.future.set_exception(failure)
            else:
                group.future.set_result(results)


def _typed(exc: Exception) -> StoreError:
    """A failure as the store's own error (a caller handles `StoreError`, nothing else)."""
    if isinstance(exc, StoreError):
        return exc
    return StoreError(f"the store could not commit: {type(exc).__name__}: {exc}")
