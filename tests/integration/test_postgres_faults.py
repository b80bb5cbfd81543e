"""The PostgreSQL store when the database goes away: refused connections, connections
cut, a COMMIT whose answer never arrives. A real server behind a TCP proxy that fails on
command (tests/integration/tcp_proxy.py). Whatever happens: an answer within seconds,
never 500, never a hang; the store comes back by itself; nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp.test_utils import TestClient

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.intake import IntakeRequest
from jobtrail.core.model import Delivery, Observation, Verdict, utcnow
from jobtrail.receiver.app import create_app
from jobtrail.store.base import OutcomeUnknown, StoreError, StoreUnavailable
from jobtrail.store.postgres import PostgresStore
from tests import postgres
from tests.conftest import WEBHOOK_TOKEN
from tests.integration.tcp_proxy import Proxy

CALLBACK = f"/webhooks/pixazo/{WEBHOOK_TOKEN}"


def delivery(job_id: str) -> Delivery:
    return Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job_id)


def processing(job_id: str) -> Observation:
    return Observation("pixazo", job_id, "processing", progress=10)


class Rig:
    def __init__(self, url: str, proxy: Proxy) -> None:
        self.url, self.proxy = url, proxy
        parts = urlsplit(url)
        self.proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        self.stores: list[PostgresStore] = []

    async def open(self, proxied: bool = True) -> PostgresStore:
        store = PostgresStore(self.proxied if proxied else self.url, EffectPlanner(), connect_timeout=1.0)
        await store.open()
        self.stores.append(store)
        return store

    async def events(self) -> dict[str, int]:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            return dict(await conn.fetch("SELECT job_id, count(*) FROM events GROUP BY job_id"))
        finally:
            await conn.close()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with postgres.fresh_database() as url:
        parts = urlsplit(url)
        proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        await proxy.start()
        r = Rig(url, proxy)
        try:
            yield r
        finally:
            proxy.up()
            for store in r.stores:
                await store.close()
            await proxy.stop()


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    async with asyncio.timeout(seconds):  # a guard against a hang, not a speed check
        while not await check():
            await asyncio.sleep(0.05)


async def test_a_database_that_is_down_answers_unavailable_in_seconds_and_is_found_again(rig: Rig) -> None:
    store = await rig.open()
    await store.intake(delivery("j1"), [processing("j1")])
    rig.proxy.down()
    async with asyncio.timeout(15):  # "within a few seconds": never a hang
        with pytest.raises(StoreUnavailable):
            await store.intake(delivery("j2"), [processing("j2")])
        with pytest.raises(StoreUnavailable):
            await store.ping()
    rig.proxy.up()

    async def back() -> bool:
        try:
            await store.ping()
        except StoreUnavailable:
            return False
        return True

    await eventually(back)
    await store.intake(delivery("j2"), [processing("j2")])  # the provider's retry
    assert {"j1": 1, "j2": 1} == await rig.events()


async def test_a_database_that_hangs_is_a_503_within_the_write_timeout_and_loses_nothing(rig: Rig) -> None:
    """A server that takes connections and answers nothing: the caller hears within the
    write timeout (5 s), not after the driver's 60 s; what it sent lands at most once."""
    store = await rig.open()
    await store.intake(delivery("j1"), [processing("j1")])
    rig.proxy.stall()
    async with asyncio.timeout(15):  # a guard: the store's own timeout must answer first
        with pytest.raises(StoreUnavailable, match="no commit within 5 s"):
            await store.intake(delivery("j2"), [processing("j2")])
    rig.proxy.up()
    await store.intake(delivery("j2"), [processing("j2")])  # the retry

    async def both() -> bool:
        return {"j1": 1, "j2": 1} == await rig.events()

    await eventually(both)


async def test_a_commit_whose_answer_is_lost_is_an_unknown_outcome_and_its_retry_a_duplicate(
    rig: Rig,
) -> None:
    store = await rig.open()
    rig.proxy.drop_at_commit()
    with pytest.raises(OutcomeUnknown):
        await store.intake(delivery("j1"), [processing("j1")])
    assert 1 == rig.proxy.dropped_at_commit
    assert {"j1": 1} == await rig.events(), "it was committed"
    again = await store.intake(delivery("j1"), [processing("j1")])
    assert Verdict.DUPLICATE == again.verdict
    assert {"j1": 1} == await rig.events()


async def test_an_append_refused_in_its_commit_message_commits_nothing_and_the_connection_writes_on(
    rig: Rig,
) -> None:
    """A batch's events are numbered by the one message that also commits. Refused there
    (here: a row someone wrote past the log's tail), nothing of the batch is committed,
    and the connection, used again (the pool hands out the one returned last), writes its
    next batches whole and numbered in a row."""
    import asyncpg

    store = await rig.open(proxied=False)
    await store.intake(delivery("j1"), [processing("j1")])
    conn = await asyncpg.connect(rig.url)
    try:
        await conn.execute(
            "INSERT INTO events (seq, provider, job_id, type, source, at, data) "
            "SELECT events + 1, 'pixazo', 'rogue', 'status', 'test', now(), '{}' FROM log_tail"
        )
        with pytest.raises(StoreError, match="events_pkey"):
            await store.intake(delivery("j2"), [processing("j2")])
        assert 0 == await conn.fetchval("SELECT count(*) FROM deliveries WHERE job_id = 'j2'")
        await conn.execute("DELETE FROM events WHERE job_id = 'rogue'")
        for n in range(3, 30):
            await store.intake(delivery(f"j{n}"), [processing(f"j{n}")])
        seqs = [row[0] for row in await conn.fetch("SELECT seq FROM events ORDER BY seq")]
        jobs = await conn.fetchval("SELECT count(*) FROM jobs WHERE job_id = 'j2'")
    finally:
        await conn.close()
    assert {"j1": 1, **{f"j{n}": 1 for n in range(3, 30)}} == await rig.events()
    assert list(range(1, 29)) == seqs, "numbered in a row: the refused append moved no tail"
    assert 0 == jobs


async def test_an_append_with_the_logs_tail_gone_is_refused_before_its_commit(rig: Rig) -> None:
    """With the log's tail gone (a damaged database) the append has nothing to number
    from: it refuses, so nothing of the batch is committed, and the write fails with the
    reason; it is not answered with another batch's numbers."""
    import asyncpg

    store = await rig.open(proxied=False)
    for n in range(3):
        await store.intake(delivery(f"j{n}"), [processing(f"j{n}")])
    conn = await asyncpg.connect(rig.url)
    try:
        await conn.execute("DELETE FROM log_tail")
        with pytest.raises(StoreError, match="the log's tail is missing"):
            await store.intake(delivery("j9"), [processing("j9")])
        deliveries = await conn.fetchval("SELECT count(*) FROM deliveries WHERE job_id = 'j9'")
    finally:
        await conn.close()
    assert 0 == deliveries
    assert {"j0": 1, "j1": 1, "j2": 1} == await rig.events()


@pytest.mark.parametrize("notices", ["heard", "not heard"])
async def test_a_batchs_ids_and_numbers_come_from_its_writes_notice_or_else_from_session_settings(
    rig: Rig, notices: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's deliveries' ids and where its events' numbers began come back with its
    COMMIT, in the write's NOTICE: no statement after the COMMIT (here it would fail).
    Should the NOTICE not be heard (here: not recognised), the session settings are read
    instead. Either way, batches written at once on several connections are each told
    their own ids and numbers."""
    import asyncpg

    from jobtrail.store.postgres import writes

    if notices == "heard":
        monkeypatch.setattr(writes, "FIRST", "SELECT 1 / 0")
    else:
        monkeypatch.setattr(writes, "WROTE", re.compile("never said"))
    store = await rig.open(proxied=False)
    requests = [
        [IntakeRequest(delivery(f"j{b}-{i}"), (processing(f"j{b}-{i}"),)) for i in range(5)] for b in range(8)
    ]
    answers = await asyncio.gather(*(store.intake_many(batch) for batch in requests))
    told = {a.delivery_id: [e.seq for e in a.events] for batch in answers for a in batch}
    conn = await asyncpg.connect(rig.url)
    try:
        logged = {row[0]: [row[1]] for row in await conn.fetch("SELECT delivery_id, seq FROM events")}
    finally:
        await conn.close()
    assert 40 == len(logged)
    assert logged == told, "each caller was told its own events' numbers"


async def test_over_http_a_database_that_is_down_is_503_and_readyz_says_so(
    rig: Rig, make_settings: Callable[..., Any], aiohttp_client: Any
) -> None:
    store = await rig.open()
    client: TestClient[Any, Any] = await aiohttp_client(create_app(make_settings(), store))
    rig.proxy.down()
    refused = await client.post(CALLBACK, json={"request_id": "j1", "status": "PROCESSING"})
    assert (503, "store_unavailable") == (refused.status, (await refused.json())["error"])
    assert refused.headers["Retry-After"].isdigit()
    assert 503 == (await client.get("/readyz")).status
    rig.proxy.up()

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await eventually(ready)
    taken = await client.post(CALLBACK, json={"request_id": "j1", "status": "PROCESSING"})
    assert (200, "accepted") == (taken.status, (await taken.json())["verdict"])


async def test_another_replicas_appends_wake_this_one_also_after_its_listener_reconnects(rig: Rig) -> None:
    """LISTEN/NOTIFY across replicas; a notification lost while the listening connection
    was down is made up for (the backstop), so a waiter never waits long."""
    ours = await rig.open()
    theirs = await rig.open(proxied=False)
    waiting = asyncio.ensure_future(ours.wait_for_append(10))
    await asyncio.sleep(0.1)
    await theirs.intake(delivery("j1"), [processing("j1")])
    assert await waiting, "woken by the other replica's append"

    rig.proxy.down()  # our listening connection is cut; theirs writes meanwhile
    await asyncio.sleep(0.2)
    waiting = asyncio.ensure_future(ours.wait_for_append(10))
    await asyncio.sleep(0.1)
    await theirs.intake(delivery("j2"), [processing("j2")])
    rig.proxy.up()
    assert await waiting, "woken after the reconnect, though the notification was lost"
    assert [1, 2] == [e.seq for e in await ours.events_after(0)]


async def test_a_replicas_own_commits_wake_its_waiters_once_and_the_others_each_time(rig: Rig) -> None:
    """Every replica hears every commit through LISTEN, its own included: those it skips
    (it woke its waiters as it committed), the others' wake it. Each replica's commit is
    followed by the other's, so by the time one hears the other's, its own echo (sent
    before, on the same connection) would have come."""
    ours, theirs = await rig.open(proxied=False), await rig.open(proxied=False)
    for store in (ours, theirs):
        store._notifications.backstop = 3600  # only LISTEN here: the once-a-second read apart
        await eventually(lambda store=store: _connected(store))
    appends, outbox = ours.appends, ours.outbox_changes
    await ours.intake(delivery("j1"), [_succeeded("j1")])  # an event, and a download to run
    assert (appends + 1, outbox + 1) == (ours.appends, ours.outbox_changes), "its own, woken as it committed"
    await theirs.intake(delivery("j2"), [_succeeded("j2")])

    async def heard_theirs() -> bool:
        return ours.appends >= appends + 2 and ours.outbox_changes >= outbox + 2

    await eventually(heard_theirs)
    assert (appends + 2, outbox + 2) == (ours.appends, ours.outbox_changes), "its own echo skipped"


async def _connected(store: PostgresStore) -> bool:
    return store._notifications.connected


def _succeeded(job_id: str) -> Observation:
    return Observation("pixazo", job_id, "succeeded", result_urls=("https://cdn.example/out.mp4",))
