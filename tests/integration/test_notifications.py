"""Notifications through the outbox worker to loopback receivers: signed webhooks checked
with the Standard Webhooks reference library, Slack, retries, Retry-After, 410, timeouts,
dead letters and replay, a crash between attempt and record, and a sink that hangs."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from standardwebhooks import Webhook

from jobtrail.core.model import Delivery, Observation, OutboxEntry, utcnow
from jobtrail.core.settings import Settings
from jobtrail.dispatch import replay
from jobtrail.dispatch import run as dispatch_run
from jobtrail.receiver.app import create_app
from jobtrail.receiver.serve import store_for
from jobtrail.runtime.health import Health
from jobtrail.store.base import Store
from tests.conftest import WEBHOOK_TOKEN
from tests.integration.file_server import FileServer

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Receiver:
    """Records what it is sent; answers from a script (the last answer repeats)."""

    replies: dict[str, list[Reply]] = field(default_factory=dict)
    got: list[tuple[str, dict[str, str], bytes, datetime]] = field(default_factory=list)
    gate: asyncio.Event | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{path}", self.handle)
        return app

    def bodies(self, path: str) -> list[Any]:
        return [orjson.loads(body) for p, _, body, _ in self.got if p == path]

    def headers(self, path: str) -> list[dict[str, str]]:
        return [headers for p, headers, _, _ in self.got if p == path]

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.got.append((path, dict(request.headers), await request.read(), utcnow()))
        if self.gate is not None:
            await self.gate.wait()
        queue = self.replies.get(path, [Reply()])
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(
            status=reply.status, headers=reply.headers, text="ok" if reply.status < 300 else "no"
        )


class Rig:
    def __init__(self, base: str, make_settings: Callable[..., Settings], receiver: Receiver) -> None:
        self.base, self.make_settings, self.receiver = base, make_settings, receiver
        self.stores: list[Store] = []

    async def start(self, **env: str) -> Store:
        self.settings = self.make_settings(
            **{
                "APIFRAME_API_KEY": "",
                "JOBTRAIL_NOTIFY_WEBHOOK_URL": f"{self.base}/hook",
                "JOBTRAIL_NOTIFY_WEBHOOK_SECRET": SECRET,
                "JOBTRAIL_RETRY_SCHEDULE": "1s,1s",
                **env,
            }
        )
        store = store_for(self.settings)
        await store.open()
        self.stores.append(store)
        return store

    async def fail(self, store: Store, job_id: str) -> None:
        await store.intake(
            Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job_id),
            [Observation("pixazo", job_id, "failed", error="GPU fell over", provider_status="ERROR")],
        )

    def running(self, store: Store) -> Any:
        return dispatch_run.running(self.settings, store, Health())


@pytest.fixture
async def rig(aiohttp_server: Any, make_settings: Callable[..., Settings]) -> AsyncIterator[Rig]:
    receiver = Receiver()
    server = await aiohttp_server(receiver.app())
    r = Rig(str(server.make_url("")).rstrip("/"), make_settings, receiver)
    yield r
    if receiver.gate is not None:
        receiver.gate.set()
    for store in r.stores:
        await store.close()


async def notification(
    store: Store, job_id: str, sink: str = "webhook", provider: str = "pixazo"
) -> OutboxEntry:
    [entry] = [e for e in await store.outbox_for_job(provider, job_id) if e.item.sink == sink]
    return entry


async def until(check: Callable[[], Any], timeout: float = 15.0) -> None:
    async def wait() -> None:
        while not await check():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), timeout)


def status_is(store: Store, job_id: str, *statuses: str, sink: str = "webhook") -> Callable[[], Any]:
    async def check() -> bool:
        return (await notification(store, job_id, sink)).status in statuses

    return check


async def dispatch_events(store: Store, job_id: str) -> list[Any]:
    return [e for e in await store.job_events("pixazo", job_id) if e.source == "dispatch"]


async def test_a_signed_webhook_verifies_with_the_reference_library(rig: Rig) -> None:
    key = Ed25519PrivateKey.generate()
    whsk = (
        "whsk_"
        + base64.b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())).decode()
    )
    store = await rig.start(JOBTRAIL_NOTIFY_WEBHOOK_SIGNING_KEY=whsk)
    await rig.fail(store, "p1")
    async with rig.running(store):
        await until(status_is(store, "p1", "done"))
    [(_, headers, body, _)] = rig.receiver.got
    doc = Webhook(SECRET).verify(body, headers)
    assert ("job.failed", "p1", "GPU fell over") == (doc["type"], doc["data"]["id"], doc["data"]["error"])
    v1, v1a = headers["webhook-signature"].split(" ")
    assert v1.startswith("v1,") and v1a.startswith("v1a,")
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    key.public_key().verify(base64.b64decode(v1a[4:]), content)
    [event] = await dispatch_events(store, "p1")
    assert ("notification.delivered", "webhook", 1, 200) == (
        event.type,
        event.data["sink"],
        event.data["attempt"],
        event.data["http_status"],
    )
    assert SECRET not in orjson.dumps(event.data).decode()


async def test_retries_keep_the_webhook_id_and_every_attempt_is_logged(rig: Rig) -> None:
    rig.receiver.replies["hook"] = [Reply(500), Reply(503), Reply(200)]
    store = await rig.start()
    await rig.fail(store, "p2")
    async with rig.running(store):
        await until(status_is(store, "p2", "done"))
    ids = {h["webhook-id"] for h in rig.receiver.headers("hook")}
    assert 1 == len(ids) and 3 == len(rig.receiver.headers("hook"))
    events = await dispatch_events(store, "p2")
    assert [
        ("notification.failed", 1, 500),
        ("notification.failed", 2, 503),
        ("notification.delivered", 3, 200),
    ] == [(e.type, e.data["attempt"], e.data["http_status"]) for e in events]
    assert (await notification(store, "p2")).attempts == 3


async def test_429_retry_after_is_honoured(rig: Rig) -> None:
    rig.receiver.replies["hook"] = [Reply(429, {"Retry-After": "7"}), Reply(200)]
    store = await rig.start()
    await rig.fail(store, "p3")
    async with rig.running(store):
        await until(status_is(store, "p3", "pending"))
        await until(lambda: _attempts_at_least(store, "p3", 1))
    [event] = await dispatch_events(store, "p3")
    wait = datetime.fromisoformat(event.data["next_attempt_at"]) - event.at
    assert 6.9 <= wait.total_seconds() < 8, (
        "Retry-After 7 beats the schedule's 1 s (next_attempt_at is set just before the event is stamped)"
    )


async def _attempts_at_least(store: Store, job_id: str, n: int) -> bool:
    return (await notification(store, job_id)).attempts >= n


async def test_410_disables_the_sink_until_its_dead_letters_are_replayed(rig: Rig) -> None:
    rig.receiver.replies["hook"] = [Reply(410), Reply(200)]
    store = await rig.start()
    await rig.fail(store, "p4")
    async with rig.running(store):
        await until(status_is(store, "p4", "dead"))
        await rig.fail(store, "p5")
        await asyncio.sleep(0.5)
        assert 1 == len(rig.receiver.got), "a disabled sink is not called"
        disabled = await store.disabled_sinks()
        assert "webhook" in disabled and "410" in disabled["webhook"]
        assert (1, False) == await replay.replay_dead(store, sink="webhook")
        await until(status_is(store, "p4", "done"))
        await until(status_is(store, "p5", "done"))
    assert {} == await store.disabled_sinks()
    types = [e.type for e in await dispatch_events(store, "p4")]
    assert ["notification.dead", "notification.replayed", "notification.delivered"] == types


async def test_a_timeout_is_a_failed_attempt(rig: Rig) -> None:
    rig.receiver.replies["hook"] = [Reply(200, delay=5), Reply(200)]
    store = await rig.start(JOBTRAIL_NOTIFY_TIMEOUT="0.3")
    await rig.fail(store, "p6")
    async with rig.running(store):
        await until(status_is(store, "p6", "done"))
    failed, delivered = await dispatch_events(store, "p6")
    assert ("timed out after 0.3 s", "notification.delivered") == (failed.data["error"], delivered.type)


async def test_exhausted_work_is_dead_lettered_and_replayed_from_the_api(
    rig: Rig, aiohttp_client: Any
) -> None:
    rig.receiver.replies["hook"] = [Reply(500), Reply(500), Reply(200)]
    store = await rig.start(JOBTRAIL_RETRY_SCHEDULE="1s")
    await rig.fail(store, "p7")
    client = await aiohttp_client(create_app(rig.settings, store, background=True))
    await until(status_is(store, "p7", "dead"))
    dead = await (await client.get("/api/outbox?status=dead")).json()
    assert ["webhook"] == [i["sink"] for i in dead["items"]]
    response = await client.post(f"/api/outbox/{dead['items'][0]['id']}/replay")
    assert 200 == response.status
    await until(status_is(store, "p7", "done"))
    again = await client.post(f"/api/outbox/{dead['items'][0]['id']}/replay")
    assert 200 == again.status, "a delivered notification can be sent again by hand"
    assert 409 == (await client.post(f"/api/outbox/{dead['items'][0]['id']}/replay")).status
    assert 404 == (await client.post("/api/outbox/99999/replay")).status
    assert 404 == (await client.post("/api/outbox/..%2F1/replay")).status
    bad = await client.post(
        "/api/outbox/replay", data=b'{"since": "yesterday"}', headers={"Content-Type": "application/json"}
    )
    assert (400, "bad_parameter") == (bad.status, (await bad.json())["error"])
    assert (
        415
        == (await client.post("/api/outbox/replay", data=b"x", headers={"Content-Type": "text/plain"})).status
    )
    unknown = await client.post("/api/outbox/replay", json={"sink": "webhook", "drop": True})
    assert 400 == unknown.status


async def test_a_crash_between_attempt_and_record_repeats_it_with_the_same_id(rig: Rig) -> None:
    """The process dies after the webhook was sent but before the attempt was recorded:
    after a restart the work runs again, and the receiver can see it is the same message."""
    store = await rig.start()
    await rig.fail(store, "p8")
    sent = asyncio.Event()
    real = store.record_attempt

    async def die(record: Any) -> Any:
        sent.set()
        await asyncio.Event().wait()  # never records: the process is about to be killed

    store.record_attempt = die  # type: ignore[method-assign]
    async with rig.running(store):
        await asyncio.wait_for(sent.wait(), 10)
    store.record_attempt = real  # type: ignore[method-assign]
    entry = await notification(store, "p8")
    assert ("pending", 0) == (entry.status, entry.attempts)
    async with rig.running(store):  # the restart releases the dead process's lease
        await until(status_is(store, "p8", "done"))
    first, second = rig.receiver.headers("hook")
    assert first["webhook-id"] == second["webhook-id"]


async def test_slack_gets_a_block_kit_message(rig: Rig) -> None:
    store = await rig.start(JOBTRAIL_SLACK_WEBHOOK_URL=f"{rig.base}/slack")
    await rig.fail(store, "p9")
    async with rig.running(store):
        await until(status_is(store, "p9", "done", sink="slack"))
    [message] = rig.receiver.bodies("slack")
    assert "pixazo job p9 failed" == message["text"]
    assert ["header", "section", "section"] == [b["type"] for b in message["blocks"]]
    assert "GPU fell over" in orjson.dumps(message).decode()


async def test_a_success_notification_waits_for_the_download_and_names_the_file(
    rig: Rig, aiohttp_server: Any
) -> None:
    files = FileServer(files={"out.mp4": b"v" * 200_000})
    files.stall_after["out.mp4"] = 1000
    file_http = await aiohttp_server(files.app())
    store = await rig.start(JOBTRAIL_DOWNLOAD_ALLOW_HOSTS="127.0.0.1", JOBTRAIL_DOWNLOAD_READ_TIMEOUT="0.5")
    url = str(file_http.make_url("/files/out.mp4"))
    await store.intake(
        Delivery("webhook", "pixazo", utcnow(), {}, b"{}", "p10"),
        [Observation("pixazo", "p10", "succeeded", result_urls=(url,))],
    )
    async with rig.running(store):
        await until(status_is(store, "p10", "done"))
    [download] = [e for e in await store.outbox_for_job("pixazo", "p10") if e.item.kind == "download"]
    [body] = rig.receiver.bodies("hook")
    assert "done" == download.status
    assert [download.item.payload["path"]] == [d["path"] for d in body["data"]["downloads"]]
    [(_, _, _, notified_at)] = rig.receiver.got
    assert notified_at > download.updated_at, "sent only after the download finished"


async def test_a_sink_that_hangs_never_slows_intake(rig: Rig, aiohttp_client: Any) -> None:
    """The webhook sink holds every request open; intake is still answered throughout."""
    rig.receiver.gate = asyncio.Event()
    store = await rig.start(JOBTRAIL_NOTIFY_TIMEOUT="600")
    client = await aiohttp_client(create_app(rig.settings, store, background=True))
    statuses = []
    for n in range(40):
        body = orjson.dumps({"request_id": f"h{n}", "status": "FAILED", "error": "x"})
        response = await client.post(
            f"/webhooks/pixazo/{WEBHOOK_TOKEN}", data=body, headers={"Content-Type": "application/json"}
        )
        statuses.append(response.status)
        if n == 0:
            await until(lambda: _true(bool(rig.receiver.got)))
    assert [200] * 40 == statuses
    assert not rig.receiver.gate.is_set(), "all of this happened while the sink was hanging"
    rig.receiver.gate.set()


async def _true(value: bool) -> bool:
    return value
