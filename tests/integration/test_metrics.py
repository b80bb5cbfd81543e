"""`GET /metrics`, read the way a scraper reads it: prometheus_client's own parser.

Each family is checked to move when the thing it counts happens, and the counters to
agree with what the store holds (their HELP says what they count).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from jobtrail.core.model import utcnow
from jobtrail.dispatch.schedule import RetrySchedule, decide
from jobtrail.receiver.app import create_app
from jobtrail.receiver.keys import STORE
from jobtrail.receiver.serve import store_for
from jobtrail.store.base import Claim
from tests import postgres
from tests.conftest import WEBHOOK_TOKEN
from tests.integration.conftest import ClientFactory
from tests.integration.test_replay import UNCONFIGURED

PIXAZO = f"/webhooks/pixazo/{WEBHOOK_TOKEN}"
JSON = {"Content-Type": "application/json"}
HOOK = {  # no worker runs in these apps: never sent
    "JOBTRAIL_NOTIFY_WEBHOOK_URL": "http://127.0.0.1:9/hook",
    "JOBTRAIL_NOTIFY_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "JOBTRAIL_NOTIFY_WAIT_FOR_DOWNLOADS": "false",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: TestClient[Any, Any], **headers: str) -> Samples:
    reply = await client.get("/metrics", headers=headers)
    assert 200 == reply.status, await reply.text()
    assert "text/plain; version=0.0.4; charset=utf-8" == reply.headers["Content-Type"]
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(await reply.text())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def webhook(client: TestClient[Any, Any], job: str, status: str, **extra: Any) -> None:
    body = json.dumps({"request_id": job, "status": status, **extra})
    assert 200 == (await client.post(PIXAZO, data=body, headers=JSON)).status


async def test_each_family_moves_when_its_event_happens(make_client: ClientFactory) -> None:
    client = await make_client(**HOOK)
    store = client.app[STORE]
    before = await scrape(client)
    assert 0 == value(before, "jobtrail_open_jobs", provider="pixazo")

    await webhook(client, "m1", "PROCESSING")
    await webhook(client, "m1", "PROCESSING")  # a duplicate: a delivery, no event
    after = await scrape(client)
    for verdict in ("accepted", "duplicate"):
        labels = {"provider": "pixazo", "source": "webhook", "verdict": verdict}
        assert 1 == value(after, "jobtrail_deliveries_total", **labels)
    assert 2 == value(after, "jobtrail_webhook_seconds_count", provider="pixazo")
    assert 0 < value(after, "jobtrail_webhook_seconds_sum", provider="pixazo")
    assert 2 <= value(after, "jobtrail_store_commit_batch_size_sum")
    assert 1 <= value(after, "jobtrail_store_commit_seconds_count")
    assert 1 == value(after, "jobtrail_open_jobs", provider="pixazo")

    await webhook(client, "m1", "COMPLETED", output={"media_url": ["https://cdn.example/m1.mp4"]})
    done = await scrape(client)
    assert 0 == value(done, "jobtrail_open_jobs", provider="pixazo")
    assert 1 == value(done, "jobtrail_outbox_items", kind="download", sink="download", status="pending")
    assert 1 == value(done, "jobtrail_outbox_items", kind="notify", sink="webhook", status="pending")
    assert 0 == value(done, "jobtrail_dead_letters", sink="webhook")

    now = utcnow()  # the notification uses up its retries: a dispatch event too
    [entry] = await store.claim(Claim("notify", now, now + timedelta(seconds=60), 1, "test", False))
    await store.record_attempt(decide(entry, UNCONFIGURED, RetrySchedule(), now, 0.0)._replace(owner="test"))
    dead = await scrape(client)
    assert 1 == value(dead, "jobtrail_dead_letters", sink="webhook")
    assert 1 == value(dead, "jobtrail_outbox_items", kind="notify", sink="webhook", status="dead")
    assert 0 == value(dead, "jobtrail_outbox_items", kind="notify", sink="webhook", status="pending")
    logged = await store.last_seq()
    assert logged == value(dead, "jobtrail_events_total"), "every event this process appended, dispatch too"
    assert value(done, "jobtrail_events_total") < logged


async def test_batches_planned_again_are_counted_as_the_store_counts_them(make_client: ClientFactory) -> None:
    client = await make_client()
    assert 0 == value(await scrape(client), "jobtrail_store_plans_changed_total")
    client.app[STORE].plans_changed = 3  # what the PostgreSQL store counts (test_postgres_append.py)
    assert 3 == value(await scrape(client), "jobtrail_store_plans_changed_total")


async def test_postgres_round_trips_are_timed_by_step_within_commits(make_client: ClientFactory) -> None:
    """A PostgreSQL group commit is two round trips (store/postgres/writes.py): each
    commit adds one read and one write, and both fit inside the commit's own time; a
    batch with no job to read (a refused webhook) adds a write alone."""
    async with postgres.fresh_database() as url:
        client = await make_client(JOBTRAIL_STORE_URL=url)
        try:
            for n in range(3):
                await webhook(client, f"rt{n}", "PROCESSING")
            await webhook(client, "rt0", "PROCESSING")  # a duplicate: a commit like any other
            samples = await scrape(client)
            bad = await client.post(PIXAZO, data=b"{not json", headers=JSON)
            assert 400 == bad.status  # kept as a rejected delivery: a commit with no job in it
            refused = await scrape(client)
        finally:
            await client.app[STORE].close()  # before its database goes (at teardown again: a no-op)
        commits = value(samples, "jobtrail_store_commit_seconds_count")
        assert 4 == value(samples, "jobtrail_store_commit_batch_size_sum")
        for step in ("read", "write"):
            assert commits == value(samples, "jobtrail_store_round_trip_seconds_count", step=step)
            seconds = value(samples, "jobtrail_store_round_trip_seconds_sum", step=step)
            assert 0 < seconds < value(samples, "jobtrail_store_commit_seconds_sum")
        assert commits + 1 == value(refused, "jobtrail_store_commit_seconds_count")
        assert commits + 1 == value(refused, "jobtrail_store_round_trip_seconds_count", step="write")
        assert commits == value(refused, "jobtrail_store_round_trip_seconds_count", step="read")


async def test_sqlite_commits_have_no_round_trips_to_time(make_client: ClientFactory) -> None:
    client = await make_client()
    await webhook(client, "local", "PROCESSING")
    samples = await scrape(client)
    assert 1 <= value(samples, "jobtrail_store_commit_seconds_count")
    assert not [name for name, _ in samples if name.startswith("jobtrail_store_round_trip")]


async def test_process_and_stream_families_are_there(make_client: ClientFactory) -> None:
    client = await make_client()
    samples = await scrape(client)
    names = {name for name, _ in samples}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= names
    assert 0 == value(samples, "jobtrail_leader"), "no background: this app does not lead"
    assert 0 == value(samples, "jobtrail_streams_open")
    async with client.get("/api/events") as stream:
        assert 200 == stream.status
        for _ in range(100):
            if value(await scrape(client), "jobtrail_streams_open") == 1:
                break
            await asyncio.sleep(0.02)
        assert 1 == value(await scrape(client), "jobtrail_streams_open")


async def test_the_leader_and_the_components_show(aiohttp_client: Any, make_settings: Any) -> None:
    settings = make_settings()
    store = store_for(settings)
    await store.open()
    try:
        client = await aiohttp_client(create_app(settings, store, background=True))
        for _ in range(200):
            samples = await scrape(client)
            if value(samples, "jobtrail_leader") == 1:
                break
            await asyncio.sleep(0.02)
        assert 1 == value(samples, "jobtrail_leader")
        assert 1 == value(samples, "jobtrail_component_healthy", component="dispatch", kind="worker")
        assert 1 == value(samples, "jobtrail_component_state", component="leader", state="running")
        assert 0 == value(samples, "jobtrail_component_state", component="leader", state="failed")
        await client.close()
    finally:
        await store.close()


async def test_a_metrics_token_is_required_once_set(make_client: ClientFactory) -> None:
    client = await make_client(JOBTRAIL_METRICS_TOKEN="scrape-token-0123456789")
    wrong = ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-token-0123456789"})
    for headers in wrong:
        reply = await client.get("/metrics", headers=headers)
        assert (401, "unauthorized") == (reply.status, (await reply.json())["error"])
    assert 200 == (await client.get("/healthz")).status, "only /metrics is behind it"
    samples = await scrape(client, Authorization="Bearer scrape-token-0123456789")
    assert "scrape-token" not in json.dumps([list(k[1]) for k in samples])


async def test_a_scrape_while_the_store_is_down_still_answers_the_counters(
    make_client: ClientFactory,
) -> None:
    client = await make_client()
    await webhook(client, "m1", "PROCESSING")
    before = await scrape(client)
    assert 1 == value(before, "jobtrail_open_jobs", provider="pixazo")
    await client.app[STORE].close()  # the gauges' query fails from here on
    after = await scrape(client)
    labels = {"provider": "pixazo", "source": "webhook", "verdict": "accepted"}
    assert 1 == value(after, "jobtrail_deliveries_total", **labels)
    assert 1 == value(after, "jobtrail_open_jobs", provider="pixazo"), "the last value read is kept"
