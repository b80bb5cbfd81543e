"""The outbox worker's own promises (secrets never recorded) and the outbox CLI."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.model import Delivery, Observation, OutboxEntry, utcnow
from jobtrail.dispatch.schedule import Outcome, RetrySchedule, decide
from jobtrail.dispatch.worker import Pool, Worker
from jobtrail.receiver.cli import main
from jobtrail.runtime.health import Component
from jobtrail.store import open_store
from jobtrail.store.base import Claim, Store, StoreUnavailable

SECRET = "sk-live-very-secret-0123456789"


async def failed_job(store: Store, job_id: str) -> None:
    await store.intake(
        Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job_id), [Observation("pixazo", job_id, "failed")]
    )


async def test_an_error_quoting_a_secret_is_recorded_redacted() -> None:
    store = open_store("memory://", EffectPlanner(("webhook",)))
    await store.open()
    await failed_job(store, "p1")

    async def leak(entry: OutboxEntry) -> Outcome:
        return Outcome(False, error=f"POST https://hooks.example.com/{SECRET}/in failed")

    worker = Worker(
        store, [Pool("notify", 1, 60, leak)], RetrySchedule(), Component("d", "worker"), secrets=[SECRET]
    )
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(200):
            events = [e for e in await store.events_after(0) if e.source == "dispatch"]
            if events:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    [event] = events
    assert "POST https://hooks.example.com/[redacted]/in failed" == event.data["error"]
    [entry] = await store.outbox_for_job("pixazo", "p1")
    assert entry.last_error is not None and SECRET not in entry.last_error
    await store.close()


def test_the_cli_lists_and_replays_dead_letters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOBTRAIL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JOBTRAIL_SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/X")

    async def prepare() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'jobtrail.db'}", EffectPlanner(("slack",)))
        await store.open()
        await failed_job(store, "p1")
        now = utcnow()
        [entry] = await store.claim(Claim("notify", now, now + timedelta(seconds=60), 1, "worker"))
        gone = Outcome(False, 410, "HTTP 410: gone", disable_sink=True)
        record = decide(entry, gone, RetrySchedule(), utcnow(), 0.01)
        await store.record_attempt(record._replace(owner="worker"))
        await store.close()

    asyncio.run(prepare())
    assert 0 == main(["outbox", "list", "--status", "dead"])
    listed = capsys.readouterr().out
    assert (
        "slack" in listed and "dead" in listed and "HTTP 410" in listed and "sink slack is disabled" in listed
    )
    assert 2 == main(["outbox", "replay"])
    assert "name an item id" in capsys.readouterr().err
    assert 1 == main(["outbox", "replay", "999"])
    assert "no outbox item 999" in capsys.readouterr().err
    assert 0 == main(["outbox", "replay", "--sink", "slack", "--since", "2020-01-01"])
    assert "replayed 1 item;" in capsys.readouterr().out
    assert 0 == main(["outbox", "list"])
    after = capsys.readouterr().out
    assert "pending" in after and "disabled" not in after
    with pytest.raises(SystemExit):
        main(["outbox", "replay", "--since", "last tuesday"])


async def test_a_cancel_landing_at_any_point_of_the_idle_wait_stops_the_worker() -> None:
    """Regression: a suppressed CancelledError in the idle wait's cleanup let the worker
    run on after being cancelled, and the service never finished stopping."""
    store = open_store("memory://", EffectPlanner())
    await store.open()

    async def never(entry: OutboxEntry) -> Outcome:
        raise AssertionError("nothing is due")

    for turns in range(8):
        worker = Worker(
            store, [Pool("notify", 1, 60, never)], RetrySchedule(), Component("d", "worker"), idle=5
        )
        task = asyncio.create_task(worker.run())
        for _ in range(3):
            await asyncio.sleep(0)
        worker.wake()
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert {task} == done, f"the worker ignored a cancel {turns} turns after waking"
    await store.close()


class Unavailable:
    """The store, except that its first `times` checks for due work fail as a database
    that is restarting does."""

    def __init__(self, store: Store, times: int) -> None:
        self._store, self.times = store, times

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def has_due(self, claim: Claim) -> bool:
        if self.times:
            self.times -= 1
            raise StoreUnavailable("cannot reach PostgreSQL: ConnectionRefusedError")
        return await self._store.has_due(claim)


async def test_a_store_that_is_unavailable_holds_the_worker_back_without_stopping_it() -> None:
    store = open_store("memory://", EffectPlanner(("webhook",)))
    await store.open()
    await failed_job(store, "p1")
    sent: list[str] = []

    async def send(entry: OutboxEntry) -> Outcome:
        sent.append(entry.item.key)
        return Outcome(True)

    component = Component("dispatch", "worker")
    states: list[str] = []
    worker = Worker(
        Unavailable(store, 3), [Pool("notify", 1, 60, send)], RetrySchedule(), component, idle=0.05
    )  # type: ignore[arg-type]
    with capture_logs() as logs:
        task = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(30):  # a guard against a hang
                while not sent:
                    states.append(component.state.value)
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert "backing_off" in states and "running" == component.state.value
    assert ["notify:webhook:pixazo:p1:failed"] == sent
    assert [] == [e for e in logs if e["log_level"] == "error"], "no crash, no traceback"
    await store.close()
