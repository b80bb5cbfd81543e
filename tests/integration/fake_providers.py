"""Scriptable stand-ins for the providers' status routes, on a loopback aiohttp server.

Each job has a list of answers; each poll takes the next one and the last repeats.
Answers are the providers' own shapes, chosen by the test. The Oxen event stream is
scripted per connection. Every request is recorded, with the key it carried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

KEY = "provider-key-0123456789"


@dataclass
class Answer:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    raw: bytes | None = None
    delay: float = 0.0  # seconds before answering: keeps a poll in flight

    def response(self) -> web.StreamResponse:
        body = self.raw if self.raw is not None else orjson.dumps(self.body)
        return web.Response(
            status=self.status, body=body, headers=self.headers, content_type=self.content_type
        )


StreamScript = Callable[[web.StreamResponse, "FakeProviders"], Awaitable[None]]


@dataclass
class FakeProviders:
    answers: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    stream_scripts: list[StreamScript] = field(default_factory=list)
    stream_connections: int = 0
    completed: list[tuple[str, bool]] = field(default_factory=list)
    data_dir: Path | None = None

    def script(self, provider: str, job_id: str, *answers: Answer) -> None:
        self.answers[(provider, job_id)] = list(answers)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/requests/status/{id}", self._pixazo)
        app.router.add_get("/v2/jobs/{id}", self._apiframe)
        app.router.add_get("/api/ai/queue/{id}", self._oxen)
        app.router.add_post("/api/v1/video/retrieve", self._venice)
        app.router.add_post("/api/v1/video/complete", self._venice_complete)
        app.router.add_get("/api/events", self._events)
        return app

    def polls(self, provider: str, job_id: str) -> int:
        return self.calls.count((provider, job_id))

    async def _answer(self, provider: str, job_id: str) -> web.StreamResponse:
        self.calls.append((provider, job_id))
        queue = self.answers.get((provider, job_id))
        if not queue:
            return web.json_response({"error": "Not found"}, status=404)
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if answer.delay:
            await asyncio.sleep(answer.delay)
        return answer.response()

    async def _pixazo(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Ocp-Apim-Subscription-Key") != KEY:
            self.calls.append(("pixazo", request.match_info["id"]))
            return web.json_response({"error": "Access denied due to invalid subscription key."}, status=401)
        return await self._answer("pixazo", request.match_info["id"])

    async def _apiframe(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-API-Key") != KEY:
            self.calls.append(("apiframe", request.match_info["id"]))
            return web.json_response({"error": "Invalid API key"}, status=401)
        return await self._answer("apiframe", request.match_info["id"])

    async def _oxen(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": "unauthorized"}, status=401)
        return await self._answer("oxen", request.match_info["id"])

    async def _venice(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": "Authentication failed"}, status=401)
        doc = await request.json()
        if doc.get("model") != "topaz-video-upscale" or not doc.get("queue_id"):
            return web.json_response({"error": "Invalid request", "details": doc}, status=400)
        return await self._answer("venice", doc["queue_id"])

    async def _venice_complete(self, request: web.Request) -> web.StreamResponse:
        doc = await request.json()
        queue_id = doc["queue_id"]
        on_disk = False
        if self.data_dir is not None:
            on_disk = any((self.data_dir / "downloads" / "venice" / queue_id).glob(f"{queue_id}.*"))
        self.completed.append((queue_id, on_disk))
        return web.json_response({"success": True})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": "unauthorized"}, status=401)
        index = self.stream_connections
        self.stream_connections += 1
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        script = (
            self.stream_scripts[min(index, len(self.stream_scripts) - 1)] if self.stream_scripts else None
        )
        if script is not None:
            await script(response, self)
        else:
            await keep_alive_forever(response, self)
        return response


async def keep_alive_forever(response: web.StreamResponse, fake: FakeProviders) -> None:
    while True:
        await response.write(b": keep-alive\n\n")
        await asyncio.sleep(0.5)


def sse(event: str, data: Any) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (event.encode(), orjson.dumps(data))
