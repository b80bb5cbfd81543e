"""The Pixazo simulator: submit, status, and terminal/sync webhooks (seed 004)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiohttp import web

from jobtrail.simulators.base import Faults, Pusher, SimJob, push, result_routes, result_url

SUBMIT = "/topaz-upscale-video-753/v1/topaz-upscale-video-request"
WORDS = {
    "queued": "QUEUED",
    "processing": "PROCESSING",
    "succeeded": "COMPLETED",
    "failed": "FAILED",
    "error": "ERROR",
}


class Pixazo(Pusher):
    def __init__(self, key: str, faults: Faults | None = None, result_size: int = 256 * 1024) -> None:
        super().__init__()
        self.key, self.faults, self.result_size = key, faults or Faults(), result_size
        self.jobs: dict[str, SimJob] = {}
        self.base = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(SUBMIT, self.submit)
        app.router.add_get("/v2/requests/status/{id}", self.status)
        result_routes(app, self.result_size, self.faults)
        app.cleanup_ctx.append(self.pushing)
        return app

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Ocp-Apim-Subscription-Key") != self.key:
            return web.json_response({"error": "Access denied due to invalid subscription key."}, status=401)
        return None

    async def submit(self, request: web.Request) -> web.Response:
        refused = self._auth(request) or self.faults.status_fault()
        if refused:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "Request body must be JSON"}, status=400)
        video, factor = body.get("video_url"), body.get("upscale_factor", 2)
        if not isinstance(video, str) or not video.startswith(("http://", "https://")):
            return web.json_response({"error": "video_url is required and must be a URL"}, status=400)
        if factor not in (2, 4):
            return web.json_response({"error": "upscale_factor must be 2 or 4"}, status=400)
        hook, mode = request.headers.get("X-Webhook-URL"), request.headers.get("X-Webhook-Mode", "terminal")
        if mode not in ("terminal", "sync"):
            return web.json_response({"error": "X-Webhook-Mode must be terminal or sync"}, status=400)
        if hook and not (
            hook.startswith("https://") or hook.startswith(("http://127.0.0.1", "http://localhost"))
        ):
            return web.json_response({"error": "X-Webhook-URL must be an HTTPS URL"}, status=400)
        request_id = f"topaz-upscale-video-753_{uuid.uuid4()}"
        job = self.jobs[request_id] = SimJob.create(request_id, video, {"mode": mode})
        if hook:
            self.spawn(self._callbacks(job, hook, mode))
        return web.json_response(
            {
                "request_id": request_id,
                "status": "QUEUED",
                "polling_url": f"{self.base}/v2/requests/status/{request_id}",
            }
        )

    def document(self, job: SimJob) -> dict[str, Any]:
        state, _ = job.state()
        word = WORDS[state]
        done = word in ("COMPLETED", "FAILED", "ERROR")
        return {
            "request_id": job.id,
            "status": word,
            "model_id": "topaz-upscale-video-753",
            "error": {"FAILED": "Video could not be processed", "ERROR": "Internal processing error"}.get(
                word
            ),
            "output": {"media_url": [result_url(self.base, job.id)], "media_type": "video"}
            if word == "COMPLETED"
            else None,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "updated_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "completed_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()) if done else None,
        }

    async def status(self, request: web.Request) -> web.Response:
        refused = self._auth(request) or self.faults.status_fault()
        if refused:
            return refused
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"error": "Request not found"}, status=404)
        return web.json_response(self.document(job))

    async def _callbacks(self, job: SimJob, hook: str, mode: str) -> None:
        async def send() -> None:
            async with self.session.post(hook, json=self.document(job)) as response:
                await response.read()

        if mode == "sync":  # a callback on every internal poll, many identical PROCESSING ones
            while time.monotonic() < job.done_at:
                await asyncio.sleep(max(0.05, job.seconds / 6))
                if job.state()[0] == "processing":
                    await push(self.session, self.faults, send)
        await asyncio.sleep(max(0.0, job.done_at - time.monotonic()))
        stale = self.document(job) | {"status": "PROCESSING", "output": None, "completed_at": None}
        await push(self.session, self.faults, send)
        if self.faults.reorder:  # a PROCESSING callback that was held up arrives after the outcome

            async def late() -> None:
                async with self.session.post(hook, json=stale) as response:
                    await response.read()

            await push(self.session, self.faults, late)
