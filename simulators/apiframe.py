"""The Apiframe v2 simulator: submit with Idempotency-Key, job status, signed webhooks (seed 002)."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from jobtrail.providers import apiframe
from jobtrail.simulators.base import Faults, Pusher, SimJob, push, result_routes, result_url

WORDS = {
    "queued": "QUEUED",
    "processing": "PROCESSING",
    "succeeded": "COMPLETED",
    "failed": "FAILED",
    "error": "FAILED",
    "cancelled": "CANCELLED",
}
IDEMPOTENCY_WINDOW = 24 * 3600


class Apiframe(Pusher):
    def __init__(self, key: str, faults: Faults | None = None, result_size: int = 256 * 1024) -> None:
        super().__init__()
        self.key, self.faults, self.result_size = key, faults or Faults(), result_size
        self.signing_key = apiframe.signing_key(key)
        self.jobs: dict[str, SimJob] = {}
        self.idempotency: dict[str, tuple[float, str]] = {}
        self.base = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/videos/upscale", self.submit)
        app.router.add_get("/v2/jobs/{id}", self.status)
        result_routes(app, self.result_size, self.faults)
        app.cleanup_ctx.append(self.pushing)
        return app

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("X-API-Key") != self.key:
            return web.json_response({"error": "Invalid API key"}, status=401)
        return None

    async def submit(self, request: web.Request) -> web.Response:
        refused = self._auth(request) or self.faults.status_fault()
        if refused:
            return refused
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 0 < len(key) <= 255:
            return web.json_response({"error": "Idempotency-Key must be 1 to 255 characters"}, status=400)
        if key and key in self.idempotency and time.time() - self.idempotency[key][0] < IDEMPOTENCY_WINDOW:
            original = self.jobs[self.idempotency[key][1]]
            return web.json_response({"jobId": original.id, "status": WORDS[original.state()[0]]}, status=202)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "Invalid JSON body"}, status=400)
        problem = _invalid(body)
        if problem:
            return web.json_response({"error": "Validation failed", "details": problem}, status=400)
        job_id = str(uuid.uuid4())
        job = self.jobs[job_id] = SimJob.create(job_id, body["topazVideoParams"]["video"], body)
        if key:
            self.idempotency[key] = (time.time(), job_id)
        if body.get("webhookUrl"):
            events = body.get("webhookEvents") or ["completed", "failed"]
            self.spawn(self._webhooks(job, body["webhookUrl"], set(events)))
        return web.json_response({"jobId": job_id, "status": "QUEUED"}, status=202)

    def document(self, job: SimJob) -> dict[str, Any]:
        state, progress = job.state()
        word = WORDS[state]
        return {
            "id": job.id,
            "status": word,
            "model": "topaz-video-upscale",
            "progress": progress if word != "QUEUED" else None,
            "result": {"videoUrl": result_url(self.base, job.id)} if word == "COMPLETED" else None,
            "error": "Upscaling failed" if word == "FAILED" else None,
            "creditCost": 12,
            "webhookStatus": "delivered",
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "completedAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            if word in ("COMPLETED", "FAILED")
            else None,
            "expired": False,
            "input": job.params.get("topazVideoParams"),
        }

    async def status(self, request: web.Request) -> web.Response:
        refused = self._auth(request) or self.faults.status_fault()
        if refused:
            return refused
        job_id = request.match_info["id"]
        try:
            uuid.UUID(job_id)
        except ValueError:
            return web.json_response({"error": "Invalid job id"}, status=400)
        job = self.jobs.get(job_id)
        if job is None:
            return web.json_response({"error": "Job not found"}, status=404)
        return web.json_response(self.document(job))

    async def _webhooks(self, job: SimJob, url: str, events: set[str]) -> None:
        async def deliver(body: dict[str, Any], event: str) -> None:
            raw = orjson.dumps(body)
            headers = {
                "Content-Type": "application/json",
                "X-Webhook-Event": event,
                apiframe.SIGNATURE_HEADER: "sha256=" + apiframe.sign(self.signing_key, raw),
            }
            async with self.session.post(url, data=raw, headers=headers) as response:
                await response.read()

        sends = []
        if "progress" in events:
            for percent in (25, 50, 75):
                at = job.started + job.seconds * percent / 100
                body = {
                    "event": "progress",
                    "jobId": job.id,
                    "status": "PROCESSING",
                    "progress": percent,
                    "model": "topaz-video-upscale",
                }
                sends.append((at, body, "progress"))
        for at, body, event in sends:
            late = job.seconds if self.faults.reorder else 0.0  # progress arriving after the outcome
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            self.spawn(
                push(self.session, self.faults, functools.partial(deliver, body, event), extra_delay=late)
            )
        await asyncio.sleep(max(0.0, job.done_at - time.monotonic()))
        doc = self.document(job)
        if doc["status"] == "COMPLETED" and "completed" in events:
            body = {
                "event": "completed",
                "jobId": job.id,
                "status": "COMPLETED",
                "progress": 100,
                "result": doc["result"],
                "model": "topaz-video-upscale",
                "creditCost": 12,
                "completedAt": doc["completedAt"],
            }
            await push(self.session, self.faults, lambda: deliver(body, "completed"))
        elif doc["status"] == "FAILED" and "failed" in events:
            body = {
                "event": "failed",
                "jobId": job.id,
                "status": "FAILED",
                "error": doc["error"],
                "model": "topaz-video-upscale",
            }
            await push(self.session, self.faults, lambda: deliver(body, "failed"))


def _invalid(body: Any) -> dict[str, str] | None:
    if not isinstance(body, dict) or body.get("model") != "topaz-video-upscale":
        return {"model": "must be topaz-video-upscale"}
    params = body.get("topazVideoParams")
    if not isinstance(params, dict):
        return {"topazVideoParams": "is required"}
    if not isinstance(params.get("video"), str) or not params["video"].startswith(("http://", "https://")):
        return {"topazVideoParams.video": "must be a video URL"}
    if params.get("target_resolution", "1080p") not in ("720p", "1080p", "4k"):
        return {"topazVideoParams.target_resolution": "must be 720p, 1080p or 4k"}
    if params.get("target_fps", 30) not in (24, 30, 60):
        return {"topazVideoParams.target_fps": "must be 24, 30 or 60"}
    events = body.get("webhookEvents", [])
    if not isinstance(events, list) or not set(events) <= {"progress", "completed", "failed"}:
        return {"webhookEvents": "must be a subset of progress, completed, failed"}
    return None
