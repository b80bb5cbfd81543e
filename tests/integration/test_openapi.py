"""`GET /api/openapi.json` describes every route, and only routes that exist."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate


async def test_the_description_is_valid_openapi_3_1(client: TestClient[Any, Any]) -> None:
    reply = await client.get("/api/openapi.json")
    assert 200 == reply.status
    document = await reply.json()
    assert "3.1.0" == document["openapi"]
    validate(document)


async def test_every_route_is_described_and_every_description_is_a_route(
    client: TestClient[Any, Any],
) -> None:
    document = await (await client.get("/api/openapi.json")).json()
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    served = set()
    for route in client.app.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical if route.resource is not None else ""
        if path == "/" or path.startswith("/ui"):
            continue  # the console: pages and form posts for a browser, not the API (tests/browser)
        served.add(("POST" if route.method == "*" else route.method, path))  # `*`: any method, POST described
    assert served == described


async def test_what_a_route_answers_matches_its_description(client: TestClient[Any, Any]) -> None:
    """Spot checks here; tests/e2e/test_schemathesis.py generates the rest."""
    document = await (await client.get("/api/openapi.json")).json()
    job_fields = set(document["components"]["schemas"]["Job"]["properties"])
    tracked = await client.post("/api/jobs", json={"provider": "apiframe", "id": "a-1"})
    assert 201 == tracked.status and job_fields == set(await tracked.json())
    refused = await client.post("/api/jobs", json={"provider": "venice", "id": "v-1"})
    assert "409" in document["paths"]["/api/jobs"]["post"]["responses"]
    assert {"error", "message"} == set(await refused.json())
