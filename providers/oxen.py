"""Oxen.ai: the status document, the SSE `media_generation_completed` event, and requests.

Statuses are lower case: queued, processing, succeeded, failed, cancelled. Times are Unix
seconds. The stream carries no ids and says nothing about cancelled generations, so
polling is the source of truth (PROVIDERS.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import orjson

from jobtrail.core.intake import IntakeRequest
from jobtrail.core.model import Delivery, Job, Observation, Status
from jobtrail.core.settings import ProviderSettings
from jobtrail.providers import fields
from jobtrail.providers.fields import PayloadError
from jobtrail.providers.replies import HttpCall

NAME = "oxen"
BASE_URL = "https://hub.oxen.ai"
COMPLETED_EVENT = "media_generation_completed"
STATUSES = {s.value: s for s in Status}


def _auth(settings: ProviderSettings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.api_key or ''}"}


def events_call(settings: ProviderSettings) -> HttpCall:
    return HttpCall("GET", f"{settings.base_url or BASE_URL}/api/events", _auth(settings))


def status_call(settings: ProviderSettings, job: Job) -> HttpCall:
    return HttpCall(
        "GET", f"{settings.base_url or BASE_URL}/api/ai/queue/{quote(job.id, safe='')}", _auth(settings)
    )


def _status(value: Any, allowed: dict[str, Status]) -> Status:
    if not isinstance(value, str) or value.lower() not in allowed:
        raise PayloadError(f"status must be one of {', '.join(allowed)}")
    return allowed[value.lower()]


def parse_status(payload: Any) -> Observation:
    """Read `GET /api/ai/queue/{generation_id}`."""
    doc = fields.mapping(payload, "the Oxen generation")
    status = _status(doc.get("status"), STATUSES)
    result = doc.get("result_url")
    return Observation(
        provider=NAME,
        job_id=fields.job_id(doc.get("generation_id"), "generation_id"),
        kind=status.value,
        result_urls=(fields.url(result, "result_url"),) if status is Status.SUCCEEDED and result else (),
        error=fields.text(doc.get("error_message"), "error_message") if status is Status.FAILED else None,
        provider_status=status.value,
        provider_at=fields.timestamp(doc.get("completed_at"), "completed_at"),
    )


_EVENT_STATUSES = {"succeeded": Status.SUCCEEDED, "failed": Status.FAILED}


def parse_event(payload: Any) -> Observation:
    """Read the data of a `media_generation_completed` event."""
    doc = fields.mapping(payload, "the media_generation_completed data")
    status = _status(doc.get("status"), _EVENT_STATUSES)
    url = doc.get("url")
    return Observation(
        provider=NAME,
        job_id=fields.job_id(doc.get("generation_id"), "generation_id"),
        kind=status.value,
        result_urls=(fields.url(url, "url"),) if status is Status.SUCCEEDED and url else (),
        error=fields.text(doc.get("error"), "error") if status is Status.FAILED else None,
        provider_status=status.value,
    )


def intake_request(event: str, data: str, event_id: str, received_at: datetime) -> IntakeRequest:
    """One stream event as an intake request. Every event is kept in the delivery log;
    only `media_generation_completed` says something about a job, and an unreadable one
    is kept as rejected with the reason."""
    headers = {"sse-event": event[:200], "sse-id": event_id[:200]}
    body = data.encode()
    if event != COMPLETED_EVENT:
        return IntakeRequest(Delivery("sse", NAME, received_at, headers, body))
    try:
        observation = parse_event(orjson.loads(body))
    except orjson.JSONDecodeError:
        reason = "the event data is not JSON"
    except PayloadError as exc:
        reason = str(exc)
    else:
        delivery = Delivery("sse", NAME, received_at, headers, body, observation.job_id)
        return IntakeRequest(delivery, (observation,))
    return IntakeRequest(Delivery("sse", NAME, received_at, headers, body), rejection=reason)
