"""Venice.ai: no push at all; `POST /api/v1/video/retrieve` is the only channel.

A retrieve answers JSON while the job runs and, when it is done, either the video itself
(`Content-Type: video/mp4`: the answer IS the result and is streamed to disk), or JSON
`{"status": "COMPLETED"}` for models that handed out a `download_url` at submission, or
`{"status": "completed", "url"}` (one of Venice's guides). Failure is an HTTP error, not a
status: 400, 404 (MEDIA_NOT_FOUND), 422 (content policy) and 500 (inference failed) end
the job as failed with Venice's words kept; 429 and 503 are retried later.
`POST /api/v1/video/complete` deletes the stored video: only after the file is on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jobtrail.core.model import Job, Observation, Status
from jobtrail.core.settings import ProviderSettings
from jobtrail.providers import fields, replies
from jobtrail.providers.fields import PayloadError
from jobtrail.providers.replies import HttpCall, Observed, Reply

NAME = "venice"
BASE_URL = "https://api.venice.ai"
DEFAULT_MODEL = "topaz-video-upscale"
FAILED_STATUSES = (400, 404, 422, 500)
VIDEO_TYPES = ("video/", "application/octet-stream")


def model_of(job: Job) -> str:
    model = job.params.get("model")
    return model if isinstance(model, str) and model else DEFAULT_MODEL


def _call(settings: ProviderSettings, path: str, job: Job) -> HttpCall:
    return HttpCall(
        "POST",
        f"{settings.base_url or BASE_URL}/api/v1/video/{path}",
        {"Authorization": f"Bearer {settings.api_key or ''}"},
        {"model": model_of(job), "queue_id": job.id},
    )


def retrieve_call(settings: ProviderSettings, job: Job) -> HttpCall:
    return _call(settings, "retrieve", job)


def complete_call(settings: ProviderSettings, job: Job) -> HttpCall:
    return _call(settings, "complete", job)


def is_video(content_type: str) -> bool:
    """Whether a retrieve answer carries the video bytes (branch on this before reading)."""
    return content_type.lower().startswith(VIDEO_TYPES)


def finished(job: Job, file: Mapping[str, Any]) -> Observation:
    """The observation for a retrieve that answered the video, once it is safely on disk."""
    return Observation(NAME, job.id, Status.SUCCEEDED.value, provider_status="video/mp4", file=file)


def read_retrieve(job: Job, status: int, headers: Mapping[str, str], body: bytes, now: datetime) -> Reply:
    """Read a JSON (or error) answer to a retrieve."""
    if status in FAILED_STATUSES:
        said = replies.words(body) or f"HTTP {status}"
        return Observed(
            Observation(NAME, job.id, Status.FAILED.value, error=said, provider_status=str(status))
        )
    return replies.read_reply(status, headers, body, lambda doc: parse_retrieve(job, doc), now)


def parse_retrieve(job: Job, payload: Any) -> Observation:
    doc = fields.mapping(payload, "the Venice retrieve answer")
    word = doc.get("status")
    if not isinstance(word, str) or not word:
        raise PayloadError("status must be a string")
    upper = word.upper()
    if upper in ("PROCESSING", "QUEUED", "PENDING", "IN_PROGRESS"):
        kind = Status.QUEUED if upper in ("QUEUED", "PENDING") else Status.PROCESSING
        return Observation(NAME, job.id, kind.value, provider_status=word)
    if upper in ("COMPLETED", "COMPLETE", "SUCCEEDED"):
        url = doc.get("url") or doc.get("download_url") or job.params.get("download_url")
        urls = (fields.url(url, "url"),) if url else ()
        return Observation(NAME, job.id, Status.SUCCEEDED.value, result_urls=urls, provider_status=word)
    if upper in ("FAILED", "ERROR"):
        error = fields.text(doc.get("error") or doc.get("details"), "error")
        return Observation(NAME, job.id, Status.FAILED.value, error=error, provider_status=word)
    raise PayloadError(f"unknown status {word[:64]!r}")
