"""store/batching.GroupCommitter with a fake backend: batches, failures, and PlanAgain."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from jobtrail.store.base import OutcomeUnknown, StoreBusy, StoreClosed, StoreError, StoreUnavailable
from jobtrail.store.batching import GroupCommitter, PlanAgain


class Backend:
    """Prepares a batch as (generation, requests); `finish` answers `generation:request`."""

    def __init__(self) -> None:
        self.generation = 0
        self.prepared: list[list[str]] = []
        self.written: list[list[str]] = []
        self.refuse: set[str] = set()  # requests whose first write raises PlanAgain
        self.refuse_again = 0  # writes after those that raise PlanAgain too, whatever they hold
        self.broken: set[str] = set()  # requests whose writes always fail

    async def prepare(self, requests: Sequence[str]) -> tuple[int, list[str]]:
        self.prepared.append(list(requests))
        return self.generation, list(requests)

    async def finish(self, prepared: tuple[int, list[str]]) -> list[str]:
        generation, requests = prepared
        await asyncio.sleep(0.001)
        if self.broken & set(requests):
            raise RuntimeError("disk full")
        refused = self.refuse & set(requests)
        if refused or (self.generation and self.refuse_again):
            self.refuse -= refused
            self.refuse_again -= 0 if refused else 1
            self.generation += 1  # what a backend learns when its plan is refused
            raise PlanAgain("planned on something wrong")
        self.written.append(requests)
        return [f"{generation}:{r}" for r in requests]

    async def abandon(self) -> None:
        pass


@pytest.fixture
async def backend() -> Backend:
    return Backend()


@contextlib.asynccontextmanager
async def committing(backend: Backend, in_flight: int = 1) -> AsyncIterator[GroupCommitter[str, Any, str]]:
    committer = GroupCommitter(backend.prepare, backend.finish, backend.abandon, in_flight=in_flight)
    committer.start()
    try:
        yield committer
    finally:
        await committer.close()


async def run(backend: Backend, groups: list[list[str]]) -> list[object]:
    async with committing(backend) as committer:
        return await asyncio.gather(*(committer.submit_many(g) for g in groups), return_exceptions=True)


async def test_concurrent_submissions_share_batches_and_keep_their_order(backend: Backend) -> None:
    results = await run(backend, [["a"], ["b", "c"], ["d"]])
    assert [["0:a"], ["0:b", "0:c"], ["0:d"]] == results
    assert ["a", "b", "c", "d"] == [r for batch in backend.written for r in batch]


async def test_a_refused_plan_is_prepared_again_and_written_whole(backend: Backend) -> None:
    backend.refuse = {"b"}
    results = await run(backend, [["a"], ["b"], ["c"]])
    # one batch: refused, prepared again after the backend learned (generation 1), written once
    assert [["1:a"], ["1:b"], ["1:c"]] == results
    assert [["a", "b", "c"], ["a", "b", "c"]] == backend.prepared
    assert [["a", "b", "c"]] == backend.written


async def test_a_plan_refused_several_times_in_a_row_is_still_written_whole(backend: Backend) -> None:
    # a retention walk removing a page of jobs at a time refuses plan after plan
    backend.refuse, backend.refuse_again = {"b"}, 5
    results = await run(backend, [["a"], ["b"], ["c"]])
    assert [["6:a"], ["6:b"], ["6:c"]] == results
    assert 7 == len(backend.prepared)
    assert [["a", "b", "c"]] == backend.written, "written once, whole: not one by one"


async def test_a_batch_prepared_on_a_refused_one_is_prepared_again(backend: Backend) -> None:
    backend.refuse = {"a"}
    committer = GroupCommitter(backend.prepare, backend.finish, backend.abandon)
    committer.start()
    try:
        first = asyncio.ensure_future(committer.submit("a"))
        await asyncio.sleep(0)  # "a" is being written when "b" arrives
        await asyncio.sleep(0)
        second = await committer.submit("b")
        assert ("1:a", "1:b") == (await first, second)
    finally:
        await committer.close()
    assert ["a", "b"] == [r for batch in backend.written for r in batch]
    assert [["a"], ["b"], ["a"], ["b"]] == backend.prepared  # "b" planned twice: on "a", then anew


async def test_a_failing_request_fails_alone(backend: Backend) -> None:
    backend.broken = {"b"}
    results = await run(backend, [["a"], ["b"], ["c"]])
    assert ["0:a"] == results[0] and ["0:c"] == results[2]
    assert isinstance(results[1], StoreError) and "disk full" in str(results[1])


class Pipelined(Backend):
    """Writes one batch at a time in the order sent, like the SQLite writer process; after
    a failed write it refuses every later one unwritten until `abandon`."""

    def __init__(self) -> None:
        super().__init__()
        self.turn = asyncio.Lock()  # FIFO: batches are written in the order they were sent
        self.refusing = False
        self.abandons = 0
        self.sent = self.most_in_flight = 0
        self.in_flight_at_abandon: list[int] = []

    async def finish(self, prepared: tuple[int, list[str]]) -> list[str]:
        self.sent += 1
        self.most_in_flight = max(self.most_in_flight, self.sent)
        try:
            async with self.turn:
                if self.refusing:
                    await asyncio.sleep(0.001)  # a refusal is a round trip too
                    raise RuntimeError("skipped: an earlier batch failed")
                try:
                    return await super().finish(prepared)
                except Exception:
                    self.refusing = True
                    raise
        finally:
            self.sent -= 1

    async def abandon(self) -> None:
        self.refusing = False
        self.abandons += 1
        self.in_flight_at_abandon.append(self.sent)


async def test_with_two_batches_in_flight_the_next_is_sent_before_the_last_is_answered() -> None:
    backend = Pipelined()
    async with committing(backend, in_flight=2) as committer:
        first = asyncio.ensure_future(committer.submit("a"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        results = await asyncio.gather(first, *(committer.submit(r) for r in "bc"))
    assert ["0:a", "0:b", "0:c"] == results
    assert 2 == backend.most_in_flight
    assert 0 == backend.abandons


async def test_a_failed_batch_fails_alone_and_the_batch_sent_behind_it_is_written_once() -> None:
    backend = Pipelined()
    backend.broken = {"a"}
    async with committing(backend, in_flight=2) as committer:
        failing = asyncio.ensure_future(committer.submit("a"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        behind = asyncio.ensure_future(committer.submit("b"))  # sent while "a" is written
        results = await asyncio.gather(failing, behind, return_exceptions=True)
        later = await committer.submit("c")
    assert isinstance(results[0], StoreError) and "0:b" == results[1] and "0:c" == later
    assert 2 == backend.most_in_flight
    assert [["b"], ["c"]] == backend.written  # nothing written twice, nothing lost
    # retries were planned only once nothing sent before them could still be written
    assert backend.abandons >= 1 and {0} == set(backend.in_flight_at_abandon)


def test_in_flight_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="in_flight"):
        GroupCommitter(Backend().prepare, Backend().finish, Backend().abandon, in_flight=0)


class Dying(Pipelined):
    """The writer goes away with everything it was sent: unknown outcomes."""

    def __init__(self) -> None:
        super().__init__()
        self.dead: set[str] = set()

    async def finish(self, prepared: tuple[int, list[str]]) -> list[str]:
        if self.dead & set(prepared[1]):
            await asyncio.sleep(0.001)
            raise OutcomeUnknown("the writer exited before answering")
        return await super().finish(prepared)


async def test_an_unknown_outcome_is_reported_at_once_and_never_retried() -> None:
    """The write may have landed: retrying it here would plan on a guess, so its callers
    (and those of the batch sent behind it, to the same dead writer) are told."""
    backend = Dying()
    backend.dead = {"a", "b"}
    async with committing(backend, in_flight=2) as committer:
        first = asyncio.ensure_future(committer.submit("a"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        behind = asyncio.ensure_future(committer.submit("b"))
        results = await asyncio.gather(first, behind, return_exceptions=True)
        later = await committer.submit("c")
    assert [OutcomeUnknown, OutcomeUnknown] == [type(r) for r in results]
    assert [["a"], ["b"], ["c"]] == backend.prepared, "nothing prepared twice: nothing retried"
    assert "0:c" == later and backend.abandons >= 1


async def test_a_caller_waits_no_longer_than_the_write_timeout() -> None:
    backend = Backend()
    release = asyncio.Event()
    written = backend.finish

    async def stuck(prepared: tuple[int, list[str]]) -> list[str]:
        await release.wait()
        return await written(prepared)

    committer = GroupCommitter(backend.prepare, stuck, backend.abandon, write_timeout=0.2)
    committer.start()
    try:
        with pytest.raises(StoreUnavailable, match=r"no commit within 0\.2 s"):
            await committer.submit("a")
        release.set()
        assert "0:b" == await committer.submit("b")
    finally:
        await committer.close()
    assert [["a"], ["b"]] == backend.written, "the slow write still landed, once"


async def test_a_full_queue_refuses_at_once_and_takes_work_again_once_drained() -> None:
    backend = Backend()
    release = asyncio.Event()
    written = backend.finish

    async def slow(prepared: tuple[int, list[str]]) -> list[str]:
        await release.wait()
        return await written(prepared)

    committer = GroupCommitter(backend.prepare, slow, backend.abandon, max_pending=4, max_pending_bytes=100)
    committer.start()
    try:
        first = asyncio.ensure_future(committer.submit("a"))
        await asyncio.sleep(0.01)  # "a" is being written; the next ones wait in the queue
        queued = [asyncio.ensure_future(committer.submit(r, weight=1)) for r in "bcd"]
        await asyncio.sleep(0)
        with pytest.raises(StoreBusy):  # by bytes: 3 + 98 of 100, though a fourth request fits
            await committer.submit("x", weight=98)
        queued.append(asyncio.ensure_future(committer.submit("e", weight=97)))  # 100 of 100
        await asyncio.sleep(0)
        with pytest.raises(StoreBusy):  # by count: a fifth request
            await committer.submit("f")
        release.set()
        assert ["0:a", "0:b", "0:c", "0:d", "0:e"] == await asyncio.gather(first, *queued)
        assert "0:f" == await committer.submit("f")
    finally:
        await committer.close()


async def test_an_abandon_that_fails_does_not_stop_the_committer(backend: Backend) -> None:
    """Regression: `abandon` raised (the writer exited while being resumed), the batching
    task died with it, the request in flight never returned and every later one failed."""
    backend.broken = {"a"}

    async def abandon() -> None:
        raise StoreError("the SQLite writer process has exited")

    committer = GroupCommitter(backend.prepare, backend.finish, abandon)
    committer.start()
    try:
        with pytest.raises(StoreError, match="disk full"):
            await committer.submit("a")
        assert "0:b" == await committer.submit("b")
        assert committer.running
    finally:
        await committer.close()


async def test_a_crash_of_the_batching_loop_fails_its_callers_and_the_loop_goes_on() -> None:
    backend = Backend()
    crashed = False

    async def prepare(requests: Sequence[str]) -> tuple[int, list[str]]:
        return await backend.prepare(requests)

    committer = GroupCommitter(prepare, backend.finish, backend.abandon)
    original = committer._take

    def take() -> Any:  # a bug in the loop itself, once
        nonlocal crashed
        if not crashed:
            crashed = True
            raise KeyError("bug")
        return original()

    committer._take = take  # type: ignore[method-assign]
    committer.start()
    try:
        with pytest.raises(StoreUnavailable, match="KeyError"):
            await committer.submit("a")
        assert "0:b" == await committer.submit("b")
        assert 1 == committer.crashes
    finally:
        await committer.close()
    with pytest.raises(StoreClosed):
        await committer.submit("c")


async def test_an_unreachable_store_fails_the_whole_batch_at_once() -> None:
    """Retrying each request alone against a store that is down would make every one of
    them wait out its own connect timeout, and hold every later batch meanwhile."""
    backend = Backend()
    calls = 0

    async def down(prepared: tuple[int, list[str]]) -> list[str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise StoreUnavailable("cannot reach PostgreSQL: ConnectionRefusedError")

    committer = GroupCommitter(backend.prepare, down, backend.abandon)
    committer.start()
    try:
        results = await asyncio.gather(
            *(committer.submit(f"r{n}") for n in range(20)), return_exceptions=True
        )
    finally:
        await committer.close()
    assert {StoreUnavailable} == {type(r) for r in results}
    assert 1 == calls, "one attempt for the batch, not one per request"
