"""`GET /api/deliveries`: the audit trail the README promises, refusals included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import WEBHOOK_TOKEN

PIXAZO = f"/webhooks/pixazo/{WEBHOOK_TOKEN}"
JSON = {"Content-Type": "application/json"}


async def send(client: TestClient[Any, Any], path: str, body: bytes, **headers: str) -> int:
    return (await client.post(path, data=body, headers={**JSON, **headers})).status


async def test_every_delivery_is_listed_with_its_verdict_and_reason(client: TestClient[Any, Any]) -> None:
    body = json.dumps({"request_id": "p1", "status": "PROCESSING"}).encode()
    assert 200 == await send(client, PIXAZO, body)
    assert 200 == await send(client, PIXAZO, body)  # the provider's retry: a duplicate
    assert 401 == await send(client, "/webhooks/pixazo/wrong-token-0123456789", body)
    assert 401 == await send(client, "/webhooks/apiframe", b'{"id": "a1"}', **{"X-Webhook-Signature": "00"})
    page = await (await client.get("/api/deliveries")).json()
    assert [
        ("apiframe", "rejected"),
        ("pixazo", "rejected"),
        ("pixazo", "duplicate"),
        ("pixazo", "accepted"),
    ] == [(d["provider"], d["verdict"]) for d in page["deliveries"]]
    assert "does not sign this body" in page["deliveries"][0]["reason"]
    assert None is page["next_before"]
    rejected = await (await client.get("/api/deliveries?verdict=rejected&provider=pixazo")).json()
    [one] = rejected["deliveries"]
    assert "bad webhook token" == one["reason"] and "body" not in one
    shown = await (await client.get(f"/api/deliveries/{one['id']}")).json()
    assert "wrong-token" not in json.dumps(shown), "the refused token is not shown"
    accepted = page["deliveries"][-1]
    whole = await (await client.get(f"/api/deliveries/{accepted['id']}")).json()
    assert body.decode() == whole["body"] and "application/json" == whole["headers"]["Content-Type"]


async def test_pages_follow_next_before(client: TestClient[Any, Any]) -> None:
    for n in range(5):
        assert 200 == await send(
            client, PIXAZO, json.dumps({"request_id": f"p{n}", "status": "QUEUED"}).encode()
        )
    seen, path = [], "/api/deliveries?limit=2"
    while path:
        page = await (await client.get(path)).json()
        seen += [d["job_id"] for d in page["deliveries"]]
        path = f"/api/deliveries?limit=2&before={page['next_before']}" if page["next_before"] else ""
    assert ["p4", "p3", "p2", "p1", "p0"] == seen


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/deliveries?verdict=bogus", 400),
        ("/api/deliveries?provider=runway", 400),
        ("/api/deliveries?limit=0", 400),
        ("/api/deliveries?before=0", 400),
        ("/api/deliveries?before=-1", 400),
        ("/api/deliveries?since=yesterday", 400),
        ("/api/deliveries?verdict=accepted&verdict=rejected", 400),
        ("/api/deliveries?job=p1", 400),
        ("/api/deliveries/0", 404),
        ("/api/deliveries/99999999999999999999999", 404),
        ("/api/deliveries/abc", 404),
        ("/api/deliveries/1", 404),
    ],
)
async def test_bad_and_unknown_are_clear_errors(client: TestClient[Any, Any], path: str, status: int) -> None:
    reply = await client.get(path)
    assert status == reply.status
    assert {"error", "message"} == set(await reply.json())


async def test_the_api_token_guards_them(make_client: Any) -> None:
    client = await make_client(JOBTRAIL_API_TOKEN="api-token-abcdefghijklmnop")
    assert 401 == (await client.get("/api/deliveries")).status
    assert 401 == (await client.get("/api/deliveries/1")).status
