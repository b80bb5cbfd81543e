"""The Oxen.ai simulator: the async queue, generation status, cancel, and the
`/api/events` stream (seeds 000, 001): `: keep-alive` comments, no ids, no replay, nothing
for cancelled generations, presigned result URLs that expire."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from jobtrail.simulators.base import Faults, SimJob, result_routes, result_url

MODEL = "topazlabs-upscale-starlight-2-5-video"


class Oxen:
    def __init__(
        self,
        key: str,
        faults: Faults | None = None,
        result_size: int = 256 * 1024,
        result_ttl: float = 600.0,
        heartbeat: float = 15.0,
    ) -> None:
        self.key, self.faults, self.result_size = key, faults or Faults(), result_size
        self.result_ttl, self.heartbeat = result_ttl, heartbeat
        self.jobs: dict[str, SimJob] = {}
        self.announced: set[str] = set()
        self.streams: set[asyncio.Queue[bytes]] = set()
        self.connections = 0
        self.base = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/ai/queue", self.submit)
        app.router.add_get("/api/ai/queue", self.active)
        app.router.add_get("/api/ai/queue/{id}", self.status)
        app.router.add_delete("/api/ai/queue/{id}", self.cancel)
        app.router.add_get("/api/events", self.events)
        result_routes(app, self.result_size, self.faults)
        app.cleanup_ctx.append(self._ticker)
        return app

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.json_response({"error": "Unauthorized"}, status=401)
        return None

    async def submit(self, request: web.Request) -> web.Response:
        refused = self._auth(request) or self.faults.status_fault()
        if refused:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "Invalid JSON"}, status=400)
        if body.get("model") != MODEL:
            return web.json_response({"error": f"Unknown model {body.get('model')!r}"}, status=400)
        if not isinstance(body.get("input_video"), str):
            return web.json_response({"error": "Field required", "field": "input_video"}, status=422)
        if "resolution" in body and body["resolution"] not in ("1080p", "2k", "4k"):
            return web.json_response({"error": "Invalid resolution"}, status=422)
        fps = body.get("target_fps", 30)
        if not isinstance(fps, int) or not 1 <= fps <= 60:
            return web.json_response({"error": "target_fps must be between 1 and 60"}, status=422)
        count = body.get("num_generations", 1)
        if not isinstance(count, int) or not 1 <= count <= 4:
            return web.json_response(
                {"error": "num_generations must be an integer between 1 and 4"}, status=422
            )
        generations = []
        for _ in range(count):
            job_id = str(uuid.uuid4())
            self.jobs[job_id] = SimJob.create(job_id, body["input_video"], body)
            generations.append({"generation_id": job_id, "status": "queued"})
        return web.json_response({"generations": generations})

    def document(self, job: SimJob) -> dict[str, Any]:
        state, _ = job.state()
        status = "failed" if state == "error" else state
        return {
            "generation_id": job.id,
            "model_name": MODEL,
            "media_type": "video",
            "status": status,
            "result_url": result_url(self.base, job.id, self.result_ttl) if status == "succeeded" else None,
            "error_message": "Generation failed" if status == "failed" else None,
            "enqueued_at": int(time.time() - (time.monotonic() - job.started)),
            "started_at": int(time.time()),
            "completed_at": int(time.time()) if status in ("succeeded", "failed", "cancelled") else None,
        }

    async def status(self, request: web.Request) -> web.Response:
        refused = self._auth(request) or self.faults.status_fault()
        if refused:
            return refused
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"error": "Generation not found"}, status=404)
        return web.json_response(self.document(job))

    async def active(self, request: web.Request) -> web.Response:
        refused = self._auth(request)
        if refused:
            return refused
        live = [self.document(j) for j in self.jobs.values() if j.state()[0] in ("queued", "processing")]
        return web.json_response({"generations": live})

    async def cancel(self, request: web.Request) -> web.Response:
        refused = self._auth(request)
        if refused:
            return refused
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"error": "Generation not found"}, status=404)
        if job.state()[0] in ("queued", "processing"):
            job.cancelled_at = time.monotonic()
        return web.json_response({"generation_id": job.id, "status": job.state()[0]})

    async def events(self, request: web.Request) -> web.StreamResponse:
        refused = self._auth(request)
        if refused:
            return refused
        self.connections += 1
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.streams.add(queue)
        opened = time.monotonic()
        try:
            while (
                not self.faults.disconnect_after or time.monotonic() - opened < self.faults.disconnect_after
            ):
                try:
                    chunk = await asyncio.wait_for(
                        queue.get(), min(self.heartbeat, self.faults.disconnect_after or self.heartbeat)
                    )
                except TimeoutError:
                    chunk = b": keep-alive\n\n"
                await response.write(chunk)
        except ConnectionError:
            pass
        finally:
            self.streams.discard(queue)
        return response

    async def _ticker(self, app: web.Application) -> Any:
        async def tick() -> None:
            while True:
                await asyncio.sleep(0.05)
                for job in list(self.jobs.values()):
                    state, _ = job.state()
                    if job.id in self.announced or state not in ("succeeded", "failed", "error", "cancelled"):
                        continue
                    self.announced.add(job.id)
                    if state == "cancelled" or self.faults.rng.random() < self.faults.drop:
                        continue  # Oxen says nothing about cancellations; a dropped push is lost
                    doc = self.document(job)
                    data: dict[str, Any] = {
                        "generation_id": job.id,
                        "status": doc["status"],
                        "media_type": "video",
                    }
                    if doc["status"] == "succeeded":
                        data.update(model=MODEL, url=doc["result_url"])
                    else:
                        data["error"] = doc["error_message"]
                    chunk = b"event: media_generation_completed\ndata: " + orjson.dumps(data) + b"\n\n"
                    copies = 2 if self.faults.rng.random() < self.faults.duplicate else 1
                    delay = self.faults.rng.random() * self.faults.delay
                    for queue in list(self.streams):
                        for _ in range(copies):
                            asyncio.get_running_loop().call_later(delay, queue.put_nowait, chunk)

        task = asyncio.create_task(tick())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
