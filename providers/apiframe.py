"""Apiframe v2: webhook bodies and the job document as observations, and the signature.

The signature is HMAC-SHA256 over the exact raw body, keyed with the raw 32-byte SHA-256
digest of the API key; the header is `sha256=<hex>` or bare hex. `result` is a URL string
or `{"videoUrl": url}`. The webhook calls the id `jobId`, the job document `id`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import quote

from jobtrail.core.model import Job, Observation, Status
from jobtrail.core.settings import ProviderSettings
from jobtrail.providers import fields
from jobtrail.providers.fields import PayloadError
from jobtrail.providers.replies import HttpCall

NAME = "apiframe"
BASE_URL = "https://api.apiframe.ai"
KEY_HEADER = "X-API-Key"
SIGNATURE_HEADER = "X-Webhook-Signature"
EVENT_HEADER = "X-Webhook-Event"

STATUSES = {
    "QUEUED": Status.QUEUED,
    "PROCESSING": Status.PROCESSING,
    "COMPLETED": Status.SUCCEEDED,
    "FAILED": Status.FAILED,
    "CANCELLED": Status.CANCELLED,
}
EVENT_STATUS = {"progress": "PROCESSING", "completed": "COMPLETED", "failed": "FAILED"}


def signing_key(api_key: str) -> bytes:
    return hashlib.sha256(api_key.encode()).digest()


def sign(key: bytes, body: bytes) -> str:
    """The hex signature of `body` for a key from `signing_key`."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, header: str | None) -> bool:
    """True when `header` (`sha256=<hex>` or bare hex) signs `body`; constant time."""
    if not header:
        return False
    given = header.strip()
    if given[:7].lower() == "sha256=":
        given = given[7:]
    return hmac.compare_digest(sign(key, body).encode(), given.lower().encode("ascii", "replace"))


def refusal(api_key: str | None, header: str | None, body: bytes) -> str | None:
    """Why a webhook must be refused, or None when `header` signs `body` with `api_key`:
    HMAC-SHA256 over the raw body, keyed with the raw SHA-256 digest of the API key."""
    if not api_key:
        return "APIFRAME_API_KEY is not set, so no signature can be checked"
    if not header:
        return f"the {SIGNATURE_HEADER} header is missing"
    if not verify(signing_key(api_key), body, header):
        return f"the {SIGNATURE_HEADER} does not sign this body"
    return None


def parse(payload: Any) -> Observation:
    """Read a webhook body or a `GET /v2/jobs/{id}` document."""
    doc = fields.mapping(payload, "the Apiframe payload")
    raw_id = doc.get("jobId", doc.get("id"))
    job_id = fields.job_id(raw_id, "jobId")
    word = doc.get("status")
    if word is None and isinstance(doc.get("event"), str):
        word = EVENT_STATUS.get(doc["event"])
    if not isinstance(word, str) or word.upper() not in STATUSES:
        raise PayloadError(f"status must be one of {', '.join(STATUSES)}")
    word = word.upper()
    status = STATUSES[word]
    return Observation(  # by position, in Observation's field order: keywords cost more, per delivery
        NAME,
        job_id,
        status._value_,  # kind; not .value: an enum property, on intake's hot path
        fields.progress(doc.get("progress"), "progress"),
        _result(doc.get("result")) if status is Status.SUCCEEDED else (),
        fields.text(doc.get("error"), "error") if status.terminal else None,
        word,  # provider_status
        fields.timestamp(doc.get("completedAt"), "completedAt"),  # provider_at
    )


def _result(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (fields.url(value, "result"),)
    video = fields.mapping(value, "result").get("videoUrl")
    return (fields.url(video, "result.videoUrl"),) if video is not None else ()


def status_call(settings: ProviderSettings, job: Job) -> HttpCall:
    """`GET /v2/jobs/{id}` with the API key."""
    return HttpCall(
        "GET",
        f"{settings.base_url or BASE_URL}/v2/jobs/{quote(job.id, safe='')}",
        {KEY_HEADER: settings.api_key or ""},
    )
