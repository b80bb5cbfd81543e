"""Pixazo: the status document (also the webhook body) as observations.

Statuses QUEUED, PROCESSING, COMPLETED, FAILED, ERROR; FAILED and ERROR both become
`failed`, the provider's word kept in `provider_status`. Timestamps come in two formats.
Callbacks carry no signature: the receiver authenticates them by a token in the URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from jobtrail.core.model import Job, Observation, Status
from jobtrail.core.settings import ProviderSettings
from jobtrail.providers import fields
from jobtrail.providers.fields import PayloadError
from jobtrail.providers.replies import HttpCall

NAME = "pixazo"
BASE_URL = "https://gateway.pixazo.ai"
KEY_HEADER = "Ocp-Apim-Subscription-Key"

STATUSES = {
    "QUEUED": Status.QUEUED,
    "PROCESSING": Status.PROCESSING,
    "COMPLETED": Status.SUCCEEDED,
    "FAILED": Status.FAILED,
    "ERROR": Status.FAILED,
}


def parse_status(payload: Any) -> Observation:
    """Read a status document / webhook body. Unknown extra fields are ignored."""
    doc = fields.mapping(payload, "the Pixazo status document")
    request_id = fields.job_id(doc.get("request_id"), "request_id")
    word = doc.get("status")
    word = word.upper() if isinstance(word, str) else ""
    status = STATUSES.get(word)
    if status is None:
        raise PayloadError(f"status must be one of {', '.join(STATUSES)}")
    at = fields.timestamp(doc.get("completed_at"), "completed_at") or fields.timestamp(
        doc.get("updated_at"), "updated_at"
    )
    return Observation(  # by position, in Observation's field order: keywords cost more, per delivery
        NAME,
        request_id,
        status._value_,  # kind; not .value: an enum property, on intake's hot path
        None,  # progress: Pixazo reports none
        _media_urls(doc.get("output")) if status is Status.SUCCEEDED else (),
        fields.text(doc.get("error"), "error") if status is Status.FAILED else None,
        word,  # provider_status
        at,  # provider_at
    )


def _media_urls(output: Any) -> tuple[str, ...]:
    if output is None:
        return ()
    media = fields.mapping(output, "output").get("media_url")
    if media is None:
        return ()
    if isinstance(media, str):
        media = [media]
    if not isinstance(media, list):
        raise PayloadError("output.media_url must be a list of URLs")
    return tuple(fields.url(u, "output.media_url[]") for u in media)


def status_call(settings: ProviderSettings, job: Job) -> HttpCall:
    """`GET /v2/requests/status/{request_id}` with the subscription key."""
    return HttpCall(
        "GET",
        f"{settings.base_url or BASE_URL}/v2/requests/status/{quote(job.id, safe='')}",
        {KEY_HEADER: settings.api_key or ""},
    )
