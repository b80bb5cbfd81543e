"""The Venice.ai simulator: queue, retrieve (JSON while processing, the video bytes when
done, an HTTP error when failed) and complete, which deletes the video (seed 003)."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web

from jobtrail.simulators.base import Faults, SimJob, video_bytes

MODEL = "topaz-video-upscale"


class Venice:
    def __init__(self, key: str, faults: Faults | None = None, result_size: int = 256 * 1024) -> None:
        self.key, self.faults, self.result_size = key, faults or Faults(), result_size
        self.jobs: dict[str, SimJob] = {}
        self.completed: list[str] = []
        self.base = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/video/queue", self.queue)
        app.router.add_post("/api/v1/video/retrieve", self.retrieve)
        app.router.add_post("/api/v1/video/complete", self.complete)
        return app

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.json_response({"error": "Authentication failed"}, status=401)
        return None

    async def _body(self, request: web.Request) -> dict[str, object] | web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "Invalid request", "details": "body must be JSON"}, status=400)
        if not isinstance(body, dict) or body.get("model") != MODEL:
            return web.json_response(
                {"error": "Invalid request", "details": {"model": f"must be {MODEL}"}}, status=400
            )
        return body

    async def queue(self, request: web.Request) -> web.Response:
        refused = self._auth(request) or self.faults.status_fault()
        if refused:
            return refused
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if "resolution" in body or "prompt" in body:
            return web.json_response(
                {"error": "Invalid request", "details": {"resolution": "not accepted for upscale models"}},
                status=400,
            )
        if body.get("upscale_factor", 2) not in (1, 2, 4):
            return web.json_response(
                {"error": "Invalid request", "details": {"upscale_factor": "must be 1, 2 or 4"}}, status=400
            )
        video = body.get("video_url")
        if not isinstance(video, str) or not video.startswith(("http://", "https://", "data:")):
            return web.json_response(
                {"error": "Invalid request", "details": {"video_url": "is required"}}, status=400
            )
        queue_id = str(uuid.uuid4())
        self.jobs[queue_id] = SimJob.create(queue_id, video, dict(body))
        return web.json_response({"model": MODEL, "queue_id": queue_id})

    async def retrieve(self, request: web.Request) -> web.StreamResponse:
        refused = self._auth(request) or self.faults.status_fault()
        if refused:
            return refused
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        job = self.jobs.get(str(body.get("queue_id")))
        if job is None or job.deleted:
            return web.json_response({"error": "MEDIA_NOT_FOUND"}, status=404)
        state, _ = job.state()
        if state in ("queued", "processing"):
            return web.json_response(
                {
                    "status": "PROCESSING",
                    "average_execution_time": int(job.seconds * 1000),
                    "execution_duration": 0,
                }
            )
        if state == "failed":
            return web.json_response(
                {"error": "Content policy violation", "credits_refunded": True}, status=422
            )
        if state in ("error", "cancelled"):
            return web.json_response({"error": "Inference failed"}, status=500)
        return await self._video(request, video_bytes(job.id, self.result_size))

    async def _video(self, request: web.Request, data: bytes) -> web.StreamResponse:
        """The answer that is the result: cut halfway or slowed when asked to."""
        response = web.StreamResponse()
        response.content_type = "video/mp4"
        response.content_length = len(data)
        await response.prepare(request)
        if self.faults.cut_downloads > 0:
            self.faults.cut_downloads -= 1
            await response.write(data[: len(data) // 2])
            await asyncio.sleep(0.2)
            assert request.transport is not None
            request.transport.close()
            return response
        for offset in range(0, len(data), 65536):
            await response.write(data[offset : offset + 65536])
            if self.faults.slow_download:
                await asyncio.sleep(self.faults.slow_download)
        await response.write_eof()
        return response

    async def complete(self, request: web.Request) -> web.Response:
        refused = self._auth(request)
        if refused:
            return refused
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        job = self.jobs.get(str(body.get("queue_id")))
        if job is None:
            return web.json_response({"error": "MEDIA_NOT_FOUND"}, status=404)
        job.deleted = True
        self.completed.append(job.id)
        return web.json_response({"success": True})
