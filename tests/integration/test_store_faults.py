"""The SQLite store when its writer process dies, hangs or cannot start, and when writes
pile up: a real writer process on a real file, killed or stopped at the named moment
(tests/integration/writer_faults.py). Whatever happens: nothing acknowledged is lost,
nothing is answered 500, nothing hangs, and the store comes back by itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.model import Delivery, Observation, Status, Verdict, utcnow
from jobtrail.store.base import OutcomeUnknown, StoreUnavailable
from jobtrail.store.sqlite import SQLiteStore
from jobtrail.store.sqlite import process as writer_process
from tests.conftest import WEBHOOK_TOKEN
from tests.integration.writer_faults import faulty_writer

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

CALLBACK = f"/webhooks/pixazo/{WEBHOOK_TOKEN}"


def delivery(job_id: str) -> Delivery:
    return Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job_id)


def processing(job_id: str, progress: int) -> Observation:
    return Observation("pixazo", job_id, "processing", progress=progress)


def succeeded(job_id: str) -> Observation:
    return Observation("pixazo", job_id, "succeeded", result_urls=(f"https://cdn.test/{job_id}.mp4",))


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    """Until `check()` holds (a guard against a hang, not a speed check)."""
    async with asyncio.timeout(seconds):
        while not await check():
            await asyncio.sleep(0.02)


def events_per_job(path: Path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as conn:
        found: dict[str, list[str]] = {}
        for job_id, kind in conn.execute("SELECT job_id, type FROM events ORDER BY seq"):
            found.setdefault(job_id, []).append(kind)
        return found


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[SQLiteStore]]]:
    stores: list[SQLiteStore] = []

    async def open_one(name: str = "faults.db") -> SQLiteStore:
        store = SQLiteStore(tmp_path / name, EffectPlanner())
        await store.open()
        stores.append(store)
        return store

    yield open_one
    for store in stores:
        await store.close()


async def test_a_writer_killed_between_commit_and_reply_leaves_no_stale_job_behind(
    opened: Callable[..., Awaitable[SQLiteStore]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the store kept planning from its memory of jobs after a write whose
    outcome it never heard. The retry of the committed report then failed on the unique
    fingerprint index, every time, and a late `processing` moved the succeeded job back."""
    script, trigger = faulty_writer(tmp_path, "after_commit")
    monkeypatch.setattr(writer_process, "WRITER", script)
    store = await opened()
    await store.intake(delivery("j1"), [processing("j1", 10)])
    trigger.touch()
    with pytest.raises(OutcomeUnknown):
        await store.intake(delivery("j1"), [succeeded("j1")])
    assert ["job.processing", "job.succeeded"] == events_per_job(store.path)["j1"], "it was committed"

    late = await store.intake(delivery("j1"), [processing("j1", 50)])  # planned on what, now?
    assert late.job is not None and Status.SUCCEEDED == late.job.status
    again = await store.intake(delivery("j1"), [succeeded("j1")])  # the provider's redelivery
    assert Verdict.DUPLICATE == again.verdict
    job = await store.get_job("pixazo", "j1")
    assert job is not None and (Status.SUCCEEDED, 100) == (job.status, job.progress)
    assert ["job.processing", "job.succeeded", "job.processing"] == events_per_job(store.path)["j1"]


async def test_a_callback_whose_commit_was_not_answered_gets_503_and_its_retry_200(
    make_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same over HTTP: never a 500, and the provider's retry is a duplicate."""
    script, trigger = faulty_writer(tmp_path, "after_commit")
    monkeypatch.setattr(writer_process, "WRITER", script)
    client = await make_client()
    done = {"request_id": "j1", "status": "COMPLETED", "output": {"media_url": ["https://cdn.test/j1.mp4"]}}
    trigger.touch()
    lost = await client.post(CALLBACK, json=done)
    assert 503 == lost.status
    assert "store_unavailable" == (await lost.json())["error"]
    assert lost.headers["Retry-After"].isdigit()
    await eventually(lambda: _ready(client))
    retry = await client.post(CALLBACK, json=done)
    assert (200, "duplicate") == (retry.status, (await retry.json())["verdict"])


async def _ready(client: TestClient[Any, Any]) -> bool:
    return (await client.get("/readyz")).status == 200


async def test_a_writer_that_dies_while_being_resumed_does_not_stop_the_store(
    opened: Callable[..., Awaitable[SQLiteStore]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: after a refused batch the store resumes its writer; when the writer died
    right then, the batching task died with it: the request in flight never returned,
    every later intake failed with "the store is not open", and /readyz said ready."""
    script, trigger = faulty_writer(tmp_path, "on_resume")
    ours = await opened()
    monkeypatch.setattr(writer_process, "WRITER", script)
    theirs = await opened()  # the other process's writer runs unwrapped; ours dies on resume
    await theirs.intake(delivery("j1"), [processing("j1", 10)])
    first = theirs._writer.pid
    await ours.intake(delivery("j0"), [processing("j0", 10)])  # a write foreign to theirs:
    trigger.touch()  # its next batch is refused, and the writer dies as it is resumed
    async with asyncio.timeout(30):  # it answers: never a hang
        result = await theirs.intake(delivery("j2"), [processing("j2", 10)])
    assert result.events, "its write landed on the restarted writer"
    assert not trigger.exists(), "the writer was killed while being resumed"
    assert first != theirs._writer.pid
    await theirs.ping()
    later = await theirs.intake(delivery("j3"), [processing("j3", 10)])
    assert later.events
    assert {"j0": 1, "j1": 1, "j2": 1, "j3": 1} == {k: len(v) for k, v in events_per_job(ours.path).items()}


async def test_readyz_is_503_while_no_writer_can_start_and_ready_once_one_does(
    make_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script, trigger = faulty_writer(tmp_path, "on_start")
    monkeypatch.setattr(writer_process, "WRITER", script)
    client = await make_client()
    assert 200 == (await client.get("/readyz")).status
    trigger.touch()  # from now on a writer dies as it starts
    pid = _writer_pid(client)
    os.kill(pid, signal.SIGKILL)

    async def unready() -> bool:
        answer = await client.get("/readyz")
        return answer.status == 503 and "cannot start" in (await answer.json())["store"]["error"]

    await eventually(unready)
    refused = await client.post(CALLBACK, json={"request_id": "j1", "status": "PROCESSING"})
    assert (503, "store_unavailable") == (refused.status, (await refused.json())["error"])
    trigger.unlink()
    await eventually(lambda: _ready(client))
    taken = await client.post(CALLBACK, json={"request_id": "j1", "status": "PROCESSING"})
    assert (200, "accepted") == (taken.status, (await taken.json())["verdict"])


def _writer_pid(client: TestClient[Any, Any]) -> int:
    from jobtrail.receiver.keys import STORE

    store = client.app[STORE]
    assert isinstance(store, SQLiteStore)
    pid = store._writer.pid
    assert pid is not None
    return pid


async def test_a_stopped_writer_times_out_its_waiters_and_is_replaced(
    opened: Callable[..., Awaitable[SQLiteStore]],
) -> None:
    """A writer that takes a batch and never answers (a stopped process, a hung disk):
    the caller hears within the write timeout, /readyz says why, the writer is killed
    and replaced, and the retry lands once."""
    store = await opened()
    store._committer.write_timeout = 0.5
    store._writer.stuck_after = 2.0
    await store.intake(delivery("j0"), [processing("j0", 10)])
    first = store._writer.pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)
    try:
        with pytest.raises(StoreUnavailable, match="no commit within"):
            await store.intake(delivery("j1"), [processing("j1", 10)])

        async def stuck() -> bool:
            try:
                await store.ping()
            except StoreUnavailable as exc:
                return "has not answered" in str(exc)
            return False

        await eventually(stuck)
        await eventually(lambda: _replaced(store, first))
    finally:
        _resume(first)
    await store.ping()
    retried = await store.intake(delivery("j1"), [processing("j1", 10)])
    assert 1 == len(events_per_job(store.path)["j1"])
    assert retried.events or retried.verdict is Verdict.DUPLICATE


async def _replaced(store: SQLiteStore, old: int) -> bool:
    return store._writer.pid not in (None, old)


def _resume(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


async def test_a_full_queue_answers_503_with_retry_after_and_loses_nothing(
    make_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> None:
    client = await make_client()
    from jobtrail.receiver.keys import STORE

    store = client.app[STORE]
    assert isinstance(store, SQLiteStore)
    store._committer.max_pending = 8
    pid = _writer_pid(client)
    os.kill(pid, signal.SIGSTOP)
    try:
        first = asyncio.ensure_future(
            client.post(CALLBACK, json={"request_id": "first", "status": "PROCESSING"})
        )
        await asyncio.sleep(0.2)  # its batch is in the stopped writer's hands
        answers = await asyncio.gather(
            *(
                asyncio.wait_for(
                    client.post(CALLBACK, json={"request_id": f"j{n}", "status": "PROCESSING"}), 0.5
                )
                for n in range(40)
            ),
            return_exceptions=True,
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    busy = [n for n, a in enumerate(answers) if not isinstance(a, BaseException) and a.status == 503]
    assert busy, "nothing was refused although the queue was full"
    for n in busy:
        answer = answers[n]
        assert not isinstance(answer, BaseException)
        assert "store_unavailable" == json.loads(await answer.text())["error"]
        assert "Retry-After" in answer.headers
    assert 200 == (await first).status
    for n in range(40):  # the provider retries whatever was not answered 200
        retry = await client.post(CALLBACK, json={"request_id": f"j{n}", "status": "PROCESSING"})
        assert 200 == retry.status
    per_job = events_per_job(store.path)
    assert {f"j{n}" for n in range(40)} | {"first"} == set(per_job)
    assert {1} == {len(kinds) for kinds in per_job.values()}


async def test_a_full_database_refuses_with_store_unavailable_and_keeps_what_it_took(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk, as SQLite reports it (SQLITE_FULL, here from `max_page_count`): the
    write that does not fit is refused whole with a retryable error (503, not 500), and
    every acknowledged one is in the log."""
    pragmas = SQLiteStore._pragmas
    monkeypatch.setattr(SQLiteStore, "_pragmas", lambda self: [*pragmas(self), "PRAGMA max_page_count=60"])
    store = SQLiteStore(tmp_path / "full.db", EffectPlanner())
    await store.open()
    try:
        taken: list[str] = []
        with pytest.raises(StoreUnavailable, match="full"):
            for n in range(1000):
                job_id = f"j{n}"
                body = os.urandom(8000)  # incompressible, so the pages fill
                await store.intake(
                    Delivery("webhook", "pixazo", utcnow(), {}, body, job_id), [processing(job_id, 10)]
                )
                taken.append(job_id)
        assert taken, "nothing fitted at all"
        assert {job_id: ["job.processing"] for job_id in taken} == events_per_job(store.path)
        await store.ping()  # reads and the writer still work: the file is full, not broken
    finally:
        await store.close()
