"""The benchmark's Oxen stand-in, run in its own process so it does not share our CPU.

    python -m bench.sse.server PORT EVENTS JOBS

- `GET /api/events`: the first connection streams EVENTS `media_generation_completed`
  events (unique generation ids) in large writes and ends; later ones send keep-alives.
  While `/control/stream` says down, it answers 503.
- `GET /api/ai/queue/{id}`: JOBS generations `gap-<n>`: `processing` until
  `POST /control/finish`, then `succeeded`.
"""

from __future__ import annotations

import asyncio
import sys

import orjson
from aiohttp import web

state = {"finished": False, "stream_up": True, "served": 0}


def events_blob(count: int) -> bytes:
    lines = []
    for n in range(count):
        data = {
            "generation_id": f"gen-{n:08d}",
            "status": "succeeded",
            "media_type": "video",
            "model": "topazlabs-upscale-starlight-2-5-video",
            "url": f"https://cdn.oxen.test/results/gen-{n:08d}.mp4?X-Amz-Signature=abcdef0123456789",
        }
        lines.append(b"event: media_generation_completed\ndata: " + orjson.dumps(data) + b"\n\n")
    return b"".join(lines)


def make_app(count: int) -> web.Application:
    blob = events_blob(count)

    async def events(request: web.Request) -> web.StreamResponse:
        if not state["stream_up"]:
            return web.json_response({"error": "down"}, status=503)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        first = state["served"] == 0
        state["served"] += 1
        if first or request.query.get("again"):
            for start in range(0, len(blob), 256 * 1024):
                await response.write(blob[start : start + 256 * 1024])
            return response
        try:
            while True:
                await response.write(b": keep-alive\n\n")
                await asyncio.sleep(15)
        except ConnectionError:
            return response

    async def status(request: web.Request) -> web.Response:
        job_id = request.match_info["id"]
        if state["finished"]:
            body = {
                "generation_id": job_id,
                "status": "succeeded",
                "result_url": f"https://cdn.test/{job_id}.mp4",
            }
        else:
            body = {"generation_id": job_id, "status": "processing"}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def finish(request: web.Request) -> web.Response:
        state["finished"] = True
        return web.json_response({"ok": True})

    async def stream(request: web.Request) -> web.Response:
        state["stream_up"] = request.query.get("up") == "1"
        state["served"] = 1  # a reconnect gets keep-alives, not the bulk again
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/ai/queue/{id}", status)
    app.router.add_post("/control/finish", finish)
    app.router.add_post("/control/stream", stream)
    return app


if __name__ == "__main__":
    web.run_app(
        make_app(int(sys.argv[2])), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None
    )
