"""Helpers for the console's tests: webhooks, logging in, a page's CSRF token."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import API_TOKEN, WEBHOOK_TOKEN

PIXAZO = f"/webhooks/pixazo/{WEBHOOK_TOKEN}"
JSON = {"Content-Type": "application/json"}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def callback(client: TestClient[Any, Any], job: str, status: str, **extra: Any) -> None:
    body = json.dumps({"request_id": job, "status": status, **extra})
    assert 200 == (await client.post(PIXAZO, data=body, headers=JSON)).status


async def log_in(client: TestClient[Any, Any]) -> None:
    answer = await client.post("/ui/login", data={"token": API_TOKEN, "next": "/ui/"}, allow_redirects=False)
    assert 303 == answer.status, await answer.text()


async def csrf_of(client: TestClient[Any, Any], path: str = "/ui/outbox") -> str:
    page = await (await client.get(path)).text()
    found = _CSRF.search(page)
    assert found, page[:2000]
    return found.group(1)
