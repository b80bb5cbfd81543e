"""The pollers (and, for the gap, the Oxen stream) against scripted provider servers on
loopback, over a real SQLite file. Every poll answer goes through the intake transaction."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from jobtrail.core.model import Delivery, Job, Observation, Status, utcnow
from jobtrail.core.settings import Settings
from jobtrail.listeners import poller as poller_module
from jobtrail.listeners import run
from jobtrail.listeners.poller import Poller
from jobtrail.providers.polling import SPECS
from jobtrail.receiver.app import create_app
from jobtrail.receiver.serve import store_for
from jobtrail.runtime import supervise
from jobtrail.runtime.health import Health, State
from jobtrail.store.base import Store, StoreUnavailable
from tests.integration.fake_providers import KEY, Answer, FakeProviders, keep_alive_forever, sse

FAST = {
    "JOBTRAIL_POLL_MIN_INTERVAL": "0.05",
    "JOBTRAIL_POLL_MAX_INTERVAL": "0.2",
    "JOBTRAIL_POLL_AGE_FACTOR": "0",
}


class World:
    """Fake providers on a socket, settings pointing at them, an opened SQLite store."""

    def __init__(self, fake: FakeProviders, base: str, make_settings: Callable[..., Settings]) -> None:
        self.fake, self.base, self.make_settings = fake, base, make_settings
        self.health = Health()
        self.stores: list[Store] = []

    async def start(self, providers: tuple[str, ...], **env: str) -> Store:
        keys = {f"{p.upper()}_API_KEY": KEY for p in providers}
        bases = {f"{p.upper()}_BASE_URL": self.base for p in ("pixazo", "apiframe", "oxen", "venice")}
        self.settings = self.make_settings(**{"APIFRAME_API_KEY": "", **keys, **bases, **FAST, **env})
        self.fake.data_dir = self.settings.data_dir
        store = store_for(self.settings)
        await store.open()
        self.stores.append(store)
        return store

    async def track(self, store: Store, provider: str, job_id: str, **params: str) -> None:
        await store.intake(
            Delivery("api", provider, utcnow(), {}, b"{}", job_id),
            [Observation(provider, job_id, "tracked", params=params)],
        )

    def running(self, store: Store) -> Any:
        return run.running(self.settings, store, self.health)


@pytest.fixture
async def world(aiohttp_server: Any, make_settings: Callable[..., Settings]) -> AsyncIterator[World]:
    fake = FakeProviders()
    server = await aiohttp_server(fake.app())
    w = World(fake, str(server.make_url("")).rstrip("/"), make_settings)
    w.server = server
    yield w
    for store in w.stores:
        await store.close()


async def until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not await condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def terminal(store: Store, provider: str, *job_ids: str) -> Callable[[], Any]:
    async def check() -> bool:
        jobs = [await store.get_job(provider, j) for j in job_ids]
        return all(j is not None and j.status.terminal for j in jobs)

    return check


async def job(store: Store, provider: str, job_id: str) -> Job:
    found = await store.get_job(provider, job_id)
    assert found is not None
    return found


RUNNING = {
    "pixazo": Answer(
        body={
            "request_id": "j1",
            "status": "PROCESSING",
            "model_id": "topaz",
            "error": None,
            "output": None,
            "created_at": "2026-05-22T13:17:32.110Z",
            "updated_at": "2026-05-22 13:18:00",
        }
    ),
    "apiframe": Answer(
        body={
            "id": "j1",
            "status": "PROCESSING",
            "progress": 45,
            "model": "topaz-video-upscale",
            "result": None,
            "webhookStatus": "pending",
            "expired": False,
        }
    ),
    "oxen": Answer(
        body={
            "generation_id": "j1",
            "status": "processing",
            "model_name": "m",
            "media_type": "video",
            "enqueued_at": 1779450000,
            "started_at": 1779450010,
        }
    ),
}
DONE = {
    "pixazo": Answer(
        body={
            "request_id": "j1",
            "status": "COMPLETED",
            "error": None,
            "output": {"media_url": ["https://cdn.test/p.mp4"], "media_type": "video"},
            "completed_at": "2026-05-22 13:19:23",
        }
    ),
    "apiframe": Answer(
        body={
            "id": "j1",
            "status": "COMPLETED",
            "progress": 100,
            "result": "https://cdn.test/p.mp4",
            "webhookStatus": "sent",
            "expired": False,
            "creditCost": 12,
        }
    ),
    "oxen": Answer(
        body={
            "generation_id": "j1",
            "status": "succeeded",
            "result_url": "https://cdn.test/p.mp4",
            "error_message": None,
            "completed_at": 1779450100,
        }
    ),
}


@pytest.mark.parametrize("provider", ["pixazo", "apiframe", "oxen"])
async def test_an_open_job_is_polled_to_its_terminal_state(world: World, provider: str) -> None:
    store = await world.start((provider,))
    await world.track(store, provider, "j1")
    world.fake.script(provider, "j1", RUNNING[provider], RUNNING[provider], RUNNING[provider], DONE[provider])
    async with world.running(store):
        await until(terminal(store, provider, "j1"))
    done = await job(store, provider, "j1")
    assert (Status.SUCCEEDED, ("https://cdn.test/p.mp4",)) == (done.status, done.result_urls)
    events = await store.job_events(provider, "j1")
    assert ["job.tracked", "job.processing", "job.succeeded"] == [e.type for e in events]
    assert ["api", "poll", "poll"] == [e.source for e in events]
    polls = [d for d in await store.deliveries(provider=provider, job_id="j1") if d.delivery.source == "poll"]
    assert ["accepted", "accepted"] == [d.verdict.value for d in polls], "answers that repeat are not kept"
    assert ["download"] == [e.item.kind for e in await store.outbox_for_job(provider, "j1")]
    assert 4 == world.fake.polls(provider, "j1"), "a terminal job is not polled again"
    counted = await store.polls(provider, "j1")  # written by the poller as it stopped, if not before
    assert counted is not None and 4 == counted.answers, "every answer is counted on the job, kept or not"
    last = polls[-1].delivery
    assert (last.received_at, hashlib.sha256(last.body).hexdigest()[:16]) == (
        counted.last_at,
        counted.last_digest,
    )


async def test_a_venice_video_answer_is_streamed_to_disk_before_complete_is_called(world: World) -> None:
    store = await world.start(("venice",))
    video = bytes(range(256)) * 8192  # 2 MiB
    await world.track(store, "venice", "q-1")
    world.fake.script(
        "venice",
        "q-1",
        Answer(body={"status": "PROCESSING", "average_execution_time": 145000, "execution_duration": 1200}),
        Answer(raw=video, content_type="video/mp4"),
    )
    async with world.running(store):
        await until(terminal(store, "venice", "q-1"))
        await until(_true_when(lambda: bool(world.fake.completed)))
    done = await job(store, "venice", "q-1")
    assert Status.SUCCEEDED == done.status
    path = world.settings.data_dir / "downloads" / "venice" / "q-1" / "q-1.mp4"
    assert video == path.read_bytes()
    assert [] == list(path.parent.glob("*.part"))
    assert [("q-1", True)] == world.fake.completed, "complete only once the file is on disk"
    (download,) = await store.outbox_for_job("venice", "q-1")
    assert ("done", str(path), len(video), hashlib.sha256(video).hexdigest()) == (
        download.status,
        download.item.payload["path"],
        download.item.payload["bytes"],
        download.item.payload["sha256"],
    )
    deliveries = await store.deliveries(provider="venice", job_id="q-1")
    assert all(len(d.delivery.body) < 1000 for d in deliveries), "the video is not stored as a delivery"


def _true_when(check: Callable[[], bool]) -> Callable[[], Any]:
    async def wrapped() -> bool:
        return check()

    return wrapped


@pytest.mark.parametrize(
    ("answer", "status", "detail"),
    [
        (
            Answer(422, {"error": "Content policy violation", "credits_refunded": True}),
            Status.FAILED,
            "Content policy",
        ),
        (Answer(404, {"error": "MEDIA_NOT_FOUND"}), Status.FAILED, "MEDIA_NOT_FOUND"),
        (Answer(500, {"error": "Inference failed"}), Status.FAILED, "Inference failed"),
        (
            Answer(body={"status": "completed", "url": "https://v.test/o.mp4"}),
            Status.SUCCEEDED,
            "https://v.test/o.mp4",
        ),
    ],
)
async def test_venice_answers(world: World, answer: Answer, status: Status, detail: str) -> None:
    store = await world.start(("venice",))
    await world.track(store, "venice", "q-2")
    world.fake.script("venice", "q-2", answer)
    async with world.running(store):
        await until(terminal(store, "venice", "q-2"))
    done = await job(store, "venice", "q-2")
    assert status == done.status
    assert detail in (done.error or "") + " ".join(done.result_urls)
    assert [] == world.fake.completed, "complete is for a video answered by retrieve only"


async def test_venice_503_and_429_are_retried_not_failures(world: World) -> None:
    store = await world.start(("venice",), JOBTRAIL_POLL_CONCURRENCY="1")
    await world.track(store, "venice", "q-3")
    world.fake.script(
        "venice",
        "q-3",
        Answer(503, {"error": "At capacity"}),
        Answer(429, {"error": "Too many requests"}, {"Retry-After": "0"}),
        Answer(body={"status": "completed", "url": "https://v.test/o.mp4"}),
    )
    async with world.running(store):
        await until(terminal(store, "venice", "q-3"))
    assert Status.SUCCEEDED == (await job(store, "venice", "q-3")).status
    counts = world.health.snapshot()["venice.poller"]["counts"]
    assert (1, 1) == (counts["unavailable"], counts["throttled"])


async def test_a_refused_key_is_reported_and_not_retried_in_a_loop(world: World) -> None:
    store = await world.start(
        ("pixazo",), PIXAZO_API_KEY="wrong-key-xxxxxxxx", JOBTRAIL_POLL_MAX_INTERVAL="60"
    )
    await world.track(store, "pixazo", "j1")
    async with world.running(store):
        component = world.health.component("pixazo.poller", "poller")
        await until(_true_when(lambda: component.state is State.FAILED))
        await asyncio.sleep(0.5)
        assert 1 == world.fake.polls("pixazo", "j1")
    assert (
        component.reason is not None
        and "401" in component.reason
        and "invalid subscription key" in component.reason
    )
    assert component.until is not None
    assert not world.health.healthy()


async def test_429_pauses_the_whole_provider_for_retry_after(world: World) -> None:
    store = await world.start(("apiframe",), JOBTRAIL_POLL_CONCURRENCY="1")
    for job_id in ("a", "b", "c"):
        await world.track(store, "apiframe", job_id)
        world.fake.script("apiframe", job_id, Answer(body={"id": job_id, "status": "CANCELLED"}))
    world.fake.script(
        "apiframe",
        "a",
        Answer(429, {"error": "Rate limit exceeded"}, {"Retry-After": "1"}),
        Answer(body={"id": "a", "status": "CANCELLED"}),
    )
    async with world.running(store):
        component = world.health.component("apiframe.poller", "poller")
        await until(_true_when(lambda: component.state is State.BACKING_OFF))
        calls = len(world.fake.calls)
        await asyncio.sleep(0.5)
        assert calls == len(world.fake.calls), "nothing is sent while the provider is paused"
        assert component.reason is not None and "Rate limit exceeded" in component.reason
        await until(terminal(store, "apiframe", "a", "b", "c"))
    assert State.RUNNING == component.state


async def test_an_unknown_job_is_recorded_once_as_missing_and_polled_rarely(world: World) -> None:
    store = await world.start(("oxen",))
    await world.track(store, "oxen", "ghost")
    async with world.running(store):
        await until(_true_when(lambda: world.fake.polls("oxen", "ghost") >= 3))
    events = await store.job_events("oxen", "ghost")
    assert ["job.tracked", "job.missing"] == [e.type for e in events]
    assert "HTTP 404: Not found" == events[1].data["error"]
    assert not (await job(store, "oxen", "ghost")).status.terminal
    kept = [d for d in await store.deliveries(provider="oxen", job_id="ghost") if d.delivery.source == "poll"]
    assert 1 == len(kept), "the same 404 again and again is kept once"


async def test_5xx_and_garbage_back_off_per_job_then_recover(world: World) -> None:
    store = await world.start(("pixazo",))
    await world.track(store, "pixazo", "j1")
    world.fake.script(
        "pixazo",
        "j1",
        Answer(500, {"error": "boom"}),
        Answer(raw=b"<html>", content_type="text/html"),
        DONE["pixazo"],
    )
    async with world.running(store):
        await until(terminal(store, "pixazo", "j1"))
    verdicts = [d.verdict.value for d in await store.deliveries(provider="pixazo", job_id="j1")]
    assert ["accepted", "rejected", "accepted"] == verdicts, "the unreadable answer is kept, rejected"


async def test_gap_jobs_finished_while_the_stream_was_down_are_settled_by_the_reconnect_poll(
    world: World,
) -> None:
    """Case 13. Jobs finish while the stream is down, one is cancelled (Oxen never says);
    the regular schedule is slow (60 s), so only the poll after reconnecting can explain
    that every job settles; no event is logged twice."""
    ids = [f"g{i}" for i in range(12)]
    store = await world.start(("oxen",), JOBTRAIL_POLL_MIN_INTERVAL="60", JOBTRAIL_POLL_MAX_INTERVAL="60")
    for job_id in ids:
        await world.track(store, "oxen", job_id)
        world.fake.script("oxen", job_id, Answer(body={"generation_id": job_id, "status": "processing"}))

    def finished(job_id: str) -> dict[str, Any]:
        if job_id == "g11":
            return {"generation_id": job_id, "status": "cancelled"}
        if job_id == "g10":
            return {"generation_id": job_id, "status": "failed", "error_message": "OOM"}
        return {
            "generation_id": job_id,
            "status": "succeeded",
            "result_url": f"https://cdn.test/{job_id}.mp4",
        }

    async def first_connection(response: web.StreamResponse, fake: FakeProviders) -> None:
        while not all(fake.polls("oxen", j) >= 1 for j in ids):  # the start-up poll saw them running
            await asyncio.sleep(0.01)
        for job_id in ids[:2]:
            fake.script("oxen", job_id, Answer(body=finished(job_id)))
            data = {
                "generation_id": job_id,
                "status": "succeeded",
                "media_type": "video",
                "model": "m",
                "url": f"https://cdn.test/{job_id}.mp4",
            }
            await response.write(sse("media_generation_completed", data))
        await response.write(sse("model_loaded", {"note": "kept for audit"}))
        await asyncio.sleep(0.2)
        for job_id in ids[2:]:  # these finish during the gap
            fake.script("oxen", job_id, Answer(body=finished(job_id)))

    world.fake.stream_scripts = [first_connection, keep_alive_forever]
    async with world.running(store):
        await until(terminal(store, "oxen", *ids))
        assert 2 == world.fake.stream_connections
        assert State.CONNECTED == world.health.component("oxen.sse", "sse").state
    statuses = {j: (await job(store, "oxen", j)).status for j in ids}
    assert Status.CANCELLED == statuses.pop("g11")
    assert Status.FAILED == statuses.pop("g10")
    assert {Status.SUCCEEDED} == set(statuses.values())
    for job_id in ids:
        types = [e.type for e in await store.job_events("oxen", job_id)]
        assert len(types) == len(set(types)), (job_id, types)
    sources = [e.source for e in await store.job_events("oxen", "g0")]
    assert ["api", "poll", "sse"] == sources
    kept = [
        d
        for d in await store.deliveries(provider="oxen")
        if d.delivery.headers.get("sse-event") == "model_loaded"
    ]
    assert 1 == len(kept)


async def test_leaving_the_context_closes_every_task_and_connection(world: World) -> None:
    """Case 14, for the whole set: four pollers and the stream, all stopped."""
    store = await world.start(("pixazo", "apiframe", "oxen", "venice"))
    for provider in ("pixazo", "apiframe", "oxen", "venice"):
        await world.track(store, provider, "j1")
        world.fake.script(provider, "j1", RUNNING.get(provider, Answer(body={"status": "PROCESSING"})))
    before = asyncio.all_tasks()
    async with world.running(store) as pollers:
        assert {"pixazo", "apiframe", "oxen", "venice"} == set(pollers)
        await until(_true_when(lambda: world.fake.stream_connections >= 1 and len(world.fake.calls) >= 4))
        assert world.server.runner.server.connections
    await until(_true_when(lambda: not world.server.runner.server.connections))
    # The store stays open after the pollers stop: a write of theirs may still be in flight.
    leftover = {
        t for t in asyncio.all_tasks() - before if not t.done() and not t.get_name().startswith("store-")
    } - {asyncio.current_task()}
    assert set() == leftover


async def test_readyz_shows_each_listener_and_a_refused_key_as_degraded(
    world: World, aiohttp_client: Any
) -> None:
    store = await world.start(
        ("pixazo", "oxen"), PIXAZO_API_KEY="wrong-key-xxxxxxxx", JOBTRAIL_POLL_MAX_INTERVAL="60"
    )
    await world.track(store, "pixazo", "j1")
    app = create_app(world.settings, store, background=True)
    client = await aiohttp_client(app)

    async def pixazo_failed() -> bool:
        body = await (await client.get("/readyz")).json()
        return bool(body["listeners"].get("pixazo.poller", {}).get("state") == "failed")

    await until(pixazo_failed)
    response = await client.get("/readyz")
    body = await response.json()
    assert 200 == response.status
    assert "degraded" == body["status"]
    assert {"dispatch", "leader", "oxen.poller", "oxen.sse", "pixazo.poller", "retention"} == set(
        body["listeners"]
    )
    assert ("leader", "sqlite") == (body["role"], body["store"]["kind"]), "one server per file: it leads"
    pixazo = body["listeners"]["pixazo.poller"]
    assert (False, "poller") == (pixazo["healthy"], pixazo["kind"])
    assert "401" in pixazo["reason"] and pixazo["until"] is not None
    assert KEY not in await response.text() and "wrong-key" not in await response.text()


async def test_a_cancel_that_lands_as_the_poller_wakes_still_stops_it(world: World) -> None:
    """Regression: on Python 3.11 `asyncio.wait_for` returns instead of raising when it is
    cancelled just as its event fires; the poller then ran on and `running()` never left."""
    store = await world.start(("oxen",))
    async with world.running(store) as pollers:
        poller = pollers["oxen"]
        for _ in range(20):
            await asyncio.sleep(0.02)
            task = next(t for t in asyncio.all_tasks() if t.get_name() == "listener-oxen.poller")
            poller.poll_all_now()  # sets the wake event...
            task.cancel()  # ...and the cancel arrives in the same turn of the loop
            done, _ = await asyncio.wait({task}, timeout=2)
            assert {task} == done, "the poller swallowed its cancellation"
            break


async def test_metrics_show_each_components_health_and_outcomes(world: World, aiohttp_client: Any) -> None:
    store = await world.start(
        ("pixazo",), PIXAZO_API_KEY="wrong-key-xxxxxxxx", JOBTRAIL_POLL_MAX_INTERVAL="60"
    )
    await world.track(store, "pixazo", "j1")
    client = await aiohttp_client(create_app(world.settings, store, background=True))

    async def refused_counted() -> bool:
        return 'outcome="refused"} 1' in await (await client.get("/metrics")).text()

    await until(refused_counted)
    text = await (await client.get("/metrics")).text()
    assert 'jobtrail_component_healthy{component="pixazo.poller",kind="poller"} 0.0' in text
    assert 'jobtrail_component_state{component="pixazo.poller",state="failed"} 1.0' in text
    assert 'jobtrail_component_healthy{component="dispatch",kind="worker"} 1.0' in text
    assert 'jobtrail_component_state{component="dispatch",state="running"} 1.0' in text


class _ReloadFailsOnce:
    """The store, except that its second read of open jobs raises, as a bug would."""

    def __init__(self, store: Store) -> None:
        self._store, self.reads = store, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def open_jobs_after(self, provider: str, after: int, limit: int = 10_000) -> tuple[list[Job], int]:
        self.reads += 1
        if self.reads == 2:
            raise RuntimeError("injected: the poller's loop dies here")
        return await self._store.open_jobs_after(provider, after, limit)


async def test_a_poller_whose_loop_dies_mid_poll_polls_every_open_job_after_its_restart(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the polls in flight when `run()` died were cancelled with their jobs
    off the heap but still marked due, and the restarted loop (same object) never planned
    them again: the component said "running" while nothing was polled (a Venice job,
    poll-only, would never finish)."""
    monkeypatch.setattr(supervise, "RESTART_PAUSE", 0.05)
    ids = [f"r{n}" for n in range(4)]
    store = await world.start(("pixazo",))
    for job_id in ids:
        await world.track(store, "pixazo", job_id)
        slow = Answer(body={"request_id": job_id, "status": "PROCESSING"}, delay=0.3)
        world.fake.script("pixazo", job_id, slow)
    flaky = _ReloadFailsOnce(store)
    async with run.running(world.settings, flaky, world.health):  # type: ignore[arg-type]
        await until(_true_when(lambda: flaky.reads >= 3))  # died, restarted, read again
        polled = {job_id: world.fake.polls("pixazo", job_id) for job_id in ids}
        await until(_true_when(lambda: all(world.fake.polls("pixazo", j) >= polled[j] + 2 for j in ids)))
    assert State.RUNNING == world.health.component("pixazo.poller", "poller").state


async def test_a_venice_answer_larger_than_the_download_limit_is_not_kept(world: World) -> None:
    """The poll answer is the result: it is held to JOBTRAIL_DOWNLOAD_MAX_BYTES like any
    download (seen before: streamed to disk without a limit)."""
    store = await world.start(("venice",), JOBTRAIL_DOWNLOAD_MAX_BYTES="100000")
    await world.track(store, "venice", "q-big")
    world.fake.script("venice", "q-big", Answer(raw=b"v" * 300_000, content_type="video/mp4"))
    async with world.running(store):
        await until(_true_when(lambda: world.fake.polls("venice", "q-big") >= 2))
    assert Status.SUCCEEDED != (await job(store, "venice", "q-big")).status
    folder = world.settings.data_dir / "downloads" / "venice" / "q-big"
    assert [] == (list(folder.iterdir()) if folder.exists() else [])
    assert [] == world.fake.completed, "Venice is not told to delete a result we do not have"
    assert world.health.snapshot()["venice.poller"]["counts"]["unavailable"] >= 2


class _UnavailableAtFirst:
    """The store, but its first two reads of open jobs fail as a database that restarts."""

    def __init__(self, store: Store) -> None:
        self._store, self.failures = store, 2

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def open_jobs_after(self, provider: str, after: int, limit: int = 10_000) -> tuple[list[Job], int]:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("cannot reach PostgreSQL: ConnectionRefusedError")
        return await self._store.open_jobs_after(provider, after, limit)


async def test_a_store_that_is_unavailable_at_first_holds_the_poller_back_without_a_crash(
    world: World,
) -> None:
    store = await world.start(("pixazo",))
    await world.track(store, "pixazo", "j1")
    world.fake.script("pixazo", "j1", DONE["pixazo"])
    flaky = _UnavailableAtFirst(store)
    with capture_logs() as logs:
        async with run.running(world.settings, flaky, world.health):  # type: ignore[arg-type]
            await until(terminal(store, "pixazo", "j1"))
    assert 0 == flaky.failures
    assert [] == [e["event"] for e in logs if e["event"] == "listener_crashed"]
    assert State.RUNNING == world.health.component("pixazo.poller", "poller").state


class _SlowToRecord:
    """The store, but every intake waits until `open` is set: a store slower than the
    provider."""

    def __init__(self, store: Store) -> None:
        self._store, self.open, self.waiting = store, asyncio.Event(), 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def intake(self, *args: Any, **kwargs: Any) -> Any:
        self.waiting += 1
        await self.open.wait()
        self.waiting -= 1
        return await self._store.intake(*args, **kwargs)


async def test_a_slow_store_slows_the_polls_instead_of_piling_answers_up(world: World) -> None:
    """Each request slot is held until its answer is recorded: with the store stuck, no
    more than `concurrency` answers are waiting, and the provider is asked nothing more."""
    store = await world.start(("pixazo",), JOBTRAIL_POLL_CONCURRENCY="2")
    ids = [f"b{n}" for n in range(6)]
    for job_id in ids:
        await world.track(store, "pixazo", job_id)
        world.fake.script("pixazo", job_id, Answer(body={"request_id": job_id, "status": "PROCESSING"}))
    slow = _SlowToRecord(store)
    async with run.running(world.settings, slow, world.health):  # type: ignore[arg-type]
        await until(_true_when(lambda: slow.waiting == 2))
        await asyncio.sleep(0.3)  # time in which a free slot would have asked again
        asked = sum(world.fake.polls("pixazo", j) for j in ids)
        assert (2, 2) == (slow.waiting, asked), "two answers wait; nothing else was asked"
        slow.open.set()
        await until(_true_when(lambda: all(world.fake.polls("pixazo", j) >= 1 for j in ids)))


async def test_a_job_tracked_after_the_poller_started_is_polled(world: World) -> None:
    store = await world.start(("pixazo",))
    async with world.running(store):
        await until(
            _true_when(lambda: world.health.snapshot().get("pixazo.poller", {}).get("state") == "running")
        )
        world.fake.script(
            "pixazo", "late-1", Answer(body={"request_id": "late-1", "status": "ERROR", "error": "x"})
        )
        await world.track(store, "pixazo", "late-1")
        await until(terminal(store, "pixazo", "late-1"))


class RefusesCountsOnce:
    """A store whose first write of poll counts fails as a store that is restarting."""

    def __init__(self, store: Store) -> None:
        self._store, self.refused = store, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def record_polls(self, polls: Any) -> int:
        if not self.refused:
            self.refused += 1
            raise StoreUnavailable("cannot reach the database")
        return await self._store.record_polls(polls)  # type: ignore[no-any-return]


def counting_poller(world: World, store: Store, data_dir: Any) -> Poller:
    """An Oxen poller that is never started: the tests count answers and write them by hand."""
    component = Health().component("oxen", "poll")
    return Poller(world.settings.provider("oxen"), SPECS["oxen"], store, component, None, data_dir=data_dir)  # type: ignore[arg-type]


async def test_counts_the_store_could_not_take_are_written_with_the_next(world: World, tmp_path: Any) -> None:
    store = await world.start(("oxen",))
    await world.track(store, "oxen", "j1")
    job = await store.get_job("oxen", "j1")
    assert job is not None
    flaky = RefusesCountsOnce(store)
    poller = counting_poller(world, flaky, tmp_path)  # type: ignore[arg-type]
    for body in (b"first", b"second"):
        poller._count(job, Delivery("poll", "oxen", utcnow(), {}, body, "j1"))
    await poller._write_answers()  # refused: kept
    assert 1 == flaky.refused and await store.polls("oxen", "j1") is None
    last = Delivery("poll", "oxen", utcnow(), {}, b"third", "j1")
    poller._count(job, last)
    await poller._write_answers()

    counted = await store.polls("oxen", "j1")
    assert counted is not None
    assert (3, last.received_at, hashlib.sha256(b"third").hexdigest()[:16]) == counted[2:]


async def test_counts_are_written_a_chunk_at_a_time(
    world: World, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(poller_module, "POLLS_CHUNK", 2)
    store = await world.start(("oxen",))
    jobs = []
    for n in range(5):
        await world.track(store, "oxen", f"c{n}")
        found = await store.get_job("oxen", f"c{n}")
        assert found is not None
        jobs.append(found)
    calls: list[int] = []
    real = store.record_polls

    async def counted(polls: Any) -> int:
        calls.append(len(polls))
        return await real(polls)

    monkeypatch.setattr(store, "record_polls", counted)
    poller = counting_poller(world, store, tmp_path)
    for job in jobs:
        poller._count(job, Delivery("poll", "oxen", utcnow(), {}, b"x", job.id))
    await poller._write_answers()
    assert [2, 2, 1] == calls
    assert all([(await store.polls("oxen", job.id)) for job in jobs]), "every job's count is written"
