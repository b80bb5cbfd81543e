"""Webhook intake over a real socket into a real SQLite file."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from jobtrail.providers import apiframe
from jobtrail.receiver.keys import STORE
from tests.conftest import APIFRAME_KEY, WEBHOOK_TOKEN

PIXAZO = f"/webhooks/pixazo/{WEBHOOK_TOKEN}"
JSON = {"Content-Type": "application/json"}


def pixazo_body(job: str = "topaz_1", status: str = "PROCESSING", **extra: Any) -> bytes:
    return json.dumps({"request_id": job, "status": status, **extra}).encode()


def signed(body: bytes, key: str = APIFRAME_KEY) -> dict[str, str]:
    signature = apiframe.sign(apiframe.signing_key(key), body)
    return {**JSON, "X-Webhook-Signature": f"sha256={signature}", "X-Webhook-Event": "completed"}


async def deliveries(client: TestClient[Any, Any]) -> list[Any]:
    return await client.app[STORE].deliveries()


async def test_pixazo_callback_is_committed_before_the_2xx(client: TestClient[Any, Any]) -> None:
    response = await client.post(PIXAZO, data=pixazo_body(), headers=JSON)
    assert 200 == response.status
    assert {"delivery_id": 1, "verdict": "accepted"} == await response.json()
    job = await client.app[STORE].get_job("pixazo", "topaz_1")
    assert job is not None and "processing" == job.status.value


async def test_a_redelivered_callback_is_200_and_kept_as_duplicate(client: TestClient[Any, Any]) -> None:
    for _ in range(3):
        response = await client.post(PIXAZO, data=pixazo_body(status="COMPLETED"), headers=JSON)
        assert 200 == response.status
    assert ["accepted", "duplicate", "duplicate"] == [d.verdict.value for d in await deliveries(client)]
    assert 1 == len(await client.app[STORE].events_after(0))
    assert 0 == len(await client.app[STORE].outbox_for_job("pixazo", "topaz_1"))  # no result URL


async def test_concurrent_duplicates_enqueue_one_download(client: TestClient[Any, Any]) -> None:
    body = pixazo_body(status="COMPLETED", output={"media_url": ["https://cdn/out.mp4"]})
    responses = await asyncio.gather(*(client.post(PIXAZO, data=body, headers=JSON) for _ in range(20)))
    assert {200} == {r.status for r in responses}
    verdicts = sorted([(await r.json())["verdict"] for r in responses])
    assert ["accepted"] + ["duplicate"] * 19 == verdicts
    outbox = await client.app[STORE].outbox_for_job("pixazo", "topaz_1")
    assert ["download"] == [e.item.kind for e in outbox]


async def test_stored_headers_lose_credentials_and_every_configured_secret(
    client: TestClient[Any, Any],
) -> None:
    headers = {
        **JSON,
        "Authorization": "Bearer something-private",
        "Cookie": "session=abc",
        "X-Echo": f"token={WEBHOOK_TOKEN};key={APIFRAME_KEY}",
        "X-Exact": APIFRAME_KEY,  # exactly as long as the shortest secret
        "X-Short": APIFRAME_KEY[:-1],  # shorter than any secret: kept as sent
        "X-Long": "v" * 5000,
    }
    response = await client.post(PIXAZO, data=pixazo_body(), headers=headers)
    assert 200 == response.status
    [kept] = await deliveries(client)
    stored = {name.lower(): value for name, value in kept.delivery.headers.items()}
    assert "authorization" not in stored and "cookie" not in stored
    assert "token=[redacted];key=[redacted]" == stored["x-echo"]
    assert "[redacted]" == stored["x-exact"]
    assert APIFRAME_KEY[:-1] == stored["x-short"]
    assert "v" * 1024 == stored["x-long"]
    assert not any(secret in value for value in stored.values() for secret in (WEBHOOK_TOKEN, APIFRAME_KEY))


@pytest.mark.parametrize("token", ["wrong-token-0123456789abcdef", WEBHOOK_TOKEN[:-1], "x"])
async def test_a_bad_pixazo_token_is_401_and_kept_rejected(client: TestClient[Any, Any], token: str) -> None:
    response = await client.post(f"/webhooks/pixazo/{token}", data=pixazo_body(), headers=JSON)
    assert 401 == response.status
    assert "unauthorized" == (await response.json())["error"]
    [kept] = await deliveries(client)
    assert "rejected" == kept.verdict.value
    assert [] == await client.app[STORE].events_after(0)


async def test_without_a_configured_token_the_pixazo_route_refuses_all(make_client: Any) -> None:
    client = await make_client(JOBTRAIL_WEBHOOK_TOKEN="")
    response = await client.post(f"/webhooks/pixazo/{WEBHOOK_TOKEN}", data=pixazo_body(), headers=JSON)
    assert 401 == response.status


async def test_the_pixazo_route_without_a_token_is_401(client: TestClient[Any, Any]) -> None:
    assert 401 == (await client.post("/webhooks/pixazo", data=pixazo_body(), headers=JSON)).status


async def test_an_unknown_provider_is_404_with_an_error_body(client: TestClient[Any, Any]) -> None:
    response = await client.post("/webhooks/runway", data=b"{}", headers=JSON)
    assert (404, "unknown_provider") == (response.status, (await response.json())["error"])


async def test_a_signed_apiframe_completion_is_accepted(client: TestClient[Any, Any]) -> None:
    body = json.dumps(
        {
            "event": "completed",
            "jobId": "af-1",
            "status": "COMPLETED",
            "progress": 100,
            "result": {"videoUrl": "https://cdn/af.mp4"},
            "unknownField": {"x": 1},
        }
    ).encode()
    response = await client.post("/webhooks/apiframe", data=body, headers=signed(body))
    assert 200 == response.status
    job = await client.app[STORE].get_job("apiframe", "af-1")
    assert job is not None and ("https://cdn/af.mp4",) == job.result_urls


@pytest.mark.parametrize(
    "headers",
    [
        JSON,
        {**JSON, "X-Webhook-Signature": "sha256=" + "0" * 64},
        {**JSON, "X-Webhook-Signature": "garbage"},
    ],
)
async def test_a_bad_apiframe_signature_is_401(client: TestClient[Any, Any], headers: dict[str, str]) -> None:
    body = b'{"jobId": "af-1", "status": "COMPLETED"}'
    response = await client.post("/webhooks/apiframe", data=body, headers=headers)
    assert 401 == response.status
    assert [] == await client.app[STORE].events_after(0)
    assert ["rejected"] == [d.verdict.value for d in await deliveries(client)]


async def test_a_signature_over_different_bytes_is_401(client: TestClient[Any, Any]) -> None:
    """Re-serialised JSON is not the body that was signed."""
    body = b'{"jobId": "af-1", "status": "COMPLETED"}'
    response = await client.post(
        "/webhooks/apiframe", data=b'{"jobId":"af-1","status":"COMPLETED"}', headers=signed(body)
    )
    assert 401 == response.status


async def test_a_garbage_body_with_a_bad_signature_is_401_not_400(client: TestClient[Any, Any]) -> None:
    response = await client.post("/webhooks/apiframe", data=b"{{{", headers=JSON)
    assert 401 == response.status


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed_json"),
        (b'{"status": "QUEUED"}', "invalid_payload"),
        (b'{"request_id": "a/b", "status": "QUEUED"}', "invalid_payload"),
        (b'{"request_id": "r", "status": "WHATEVER"}', "invalid_payload"),
        (b'{"request_id": 12, "status": "QUEUED"}', "invalid_payload"),
        (b'{"request_id": "r", "status": "QUEUED", "updated_at": "' + b"9" * 5000 + b'"}', "invalid_payload"),
    ],
)
async def test_bad_bodies_are_400_and_leave_no_event(
    client: TestClient[Any, Any], body: bytes, code: str
) -> None:
    response = await client.post(PIXAZO, data=body, headers=JSON)
    assert (400, code) == (response.status, (await response.json())["error"])
    assert [] == await client.app[STORE].events_after(0)
    assert ["rejected"] == [d.verdict.value for d in await deliveries(client)]


async def test_unknown_extra_fields_are_accepted(client: TestClient[Any, Any]) -> None:
    body = pixazo_body(brand_new_field={"nested": [1, 2, 3]}, another=None)
    assert 200 == (await client.post(PIXAZO, data=body, headers=JSON)).status


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""]
)
async def test_a_non_json_content_type_is_415(client: TestClient[Any, Any], content_type: str) -> None:
    response = await client.post(PIXAZO, data=pixazo_body(), headers={"Content-Type": content_type})
    assert 415 == response.status
    assert "unsupported_media_type" == (await response.json())["error"]


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON", "application/json; charset=utf-8", "application/webhook+json"],
)
async def test_json_content_types_are_accepted(client: TestClient[Any, Any], content_type: str) -> None:
    headers = {"Content-Type": content_type}
    assert 200 == (await client.post(PIXAZO, data=pixazo_body(), headers=headers)).status


async def test_a_body_over_the_limit_is_413(make_client: Any) -> None:
    client = await make_client(JOBTRAIL_MAX_BODY_BYTES="2048")
    body = pixazo_body(padding="x" * 4000)
    response = await client.post(PIXAZO, data=body, headers=JSON)
    assert (413, "body_too_large") == (response.status, (await response.json())["error"])
    assert [] == await client.app[STORE].events_after(0)


async def test_a_chunked_body_over_the_limit_is_413(make_client: Any) -> None:
    """No Content-Length: the limit is enforced while reading."""
    client = await make_client(JOBTRAIL_MAX_BODY_BYTES="2048")

    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1024

    response = await client.post(PIXAZO, data=chunks(), headers=JSON)
    assert 413 == response.status


async def test_the_default_limit_is_one_mebibyte(client: TestClient[Any, Any]) -> None:
    small = pixazo_body(padding="x" * (1024 * 1024 - 200))
    large = pixazo_body(padding="x" * (1024 * 1024 + 10))
    assert 200 == (await client.post(PIXAZO, data=small, headers=JSON)).status
    assert 413 == (await client.post(PIXAZO, data=large, headers=JSON)).status


async def test_wrong_methods_get_a_json_error(client: TestClient[Any, Any]) -> None:
    response = await client.get(PIXAZO)
    assert 405 == response.status
    assert "method_not_allowed" == (await response.json())["error"]


async def test_credentials_are_not_kept_in_the_delivery_log(client: TestClient[Any, Any]) -> None:
    headers = {**JSON, "Authorization": "Bearer hunter2-secret", "X-Trace": f"t-{WEBHOOK_TOKEN}"}
    await client.post(PIXAZO, data=pixazo_body(), headers=headers)
    [kept] = await deliveries(client)
    stored = json.dumps(dict(kept.delivery.headers))
    assert "hunter2" not in stored and WEBHOOK_TOKEN not in stored
    assert "X-Trace" in kept.delivery.headers
