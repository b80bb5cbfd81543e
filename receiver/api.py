"""The read/write API under `/api`: jobs, their timelines, tracking, the event stream."""

from __future__ import annotations

import functools
import hmac
import json
from datetime import UTC, datetime

from aiohttp import web

from jobtrail.core.model import PROVIDERS, Observation, Status
from jobtrail.dispatch import replay
from jobtrail.providers import catalog, fields
from jobtrail.providers.fields import PayloadError
from jobtrail.receiver import bodies
from jobtrail.receiver.errors import ApiError, Handler
from jobtrail.receiver.keys import METRICS, SCRUB, SETTINGS, STORE
from jobtrail.receiver.views import job_view, outbox_view
from jobtrail.store.base import BadCursor

MAX_PAGE = 500
HEARTBEAT_SECONDS = 15.0


def setup(app: web.Application) -> None:
    app.router.add_get("/api/jobs", guarded(list_jobs))
    app.router.add_post("/api/jobs", guarded(track_job))
    app.router.add_get("/api/jobs/{provider}/{job_id}", guarded(show_job))
    app.router.add_get("/api/jobs/{provider}/{job_id}/events", guarded(job_events))
    app.router.add_get("/api/events", guarded(event_stream))
    app.router.add_get("/api/outbox", guarded(list_outbox))
    app.router.add_post("/api/outbox/replay", guarded(replay_outbox))
    app.router.add_post("/api/outbox/{entry_id}/replay", guarded(replay_entry))


def guarded(handler: Handler) -> Handler:
    """Require `Authorization: Bearer <JOBTRAIL_API_TOKEN>` when a token is configured."""

    @functools.wraps(handler)
    async def check(request: web.Request) -> web.StreamResponse:
        token = request.app[SETTINGS].api_token
        if token:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
                raise ApiError(401, "unauthorized", "send Authorization: Bearer <JOBTRAIL_API_TOKEN>")
        return await handler(request)

    return check


def _provider(value: str | None) -> str | None:
    if value is not None and value not in PROVIDERS:
        raise ApiError(400, "unknown_provider", f"provider must be one of {', '.join(PROVIDERS)}")
    return value


def _int_param(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= high:
        raise ApiError(400, "bad_parameter", f"{name} must be a whole number from 0 to {high}")
    return int(raw)


async def list_jobs(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in {s.value for s in Status}:
        raise ApiError(400, "bad_parameter", f"status must be one of {', '.join(s.value for s in Status)}")
    try:
        page = await request.app[STORE].list_jobs(
            provider=_provider(request.query.get("provider")),
            status=status,
            limit=max(1, _int_param(request, "limit", 50, MAX_PAGE)),
            cursor=request.query.get("cursor"),
        )
    except BadCursor as exc:
        raise ApiError(400, "bad_cursor", str(exc)) from exc
    return web.json_response({"jobs": [job_view(job) for job in page.jobs], "next_cursor": page.next_cursor})


async def show_job(request: web.Request) -> web.Response:
    store = request.app[STORE]
    provider, job_id = _provider(request.match_info["provider"]), request.match_info["job_id"]
    assert provider is not None
    job = await store.get_job(provider, job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no {provider} job {job_id[:256]!r} is tracked")
    return web.json_response(job_view(job, await store.outbox_for_job(provider, job_id)))


async def job_events(request: web.Request) -> web.Response:
    store = request.app[STORE]
    provider, job_id = _provider(request.match_info["provider"]), request.match_info["job_id"]
    assert provider is not None
    if await store.get_job(provider, job_id) is None:
        raise ApiError(404, "job_not_found", f"no {provider} job {job_id[:256]!r} is tracked")
    after = _int_param(request, "after", 0, 2**62)
    limit = max(1, _int_param(request, "limit", 1000, 10_000))
    events = await store.job_events(provider, job_id, after=after, limit=limit)
    return web.json_response({"events": [e.to_json() for e in events]})


async def track_job(request: web.Request) -> web.Response:
    """Start tracking a job submitted elsewhere; tracking it again changes nothing."""
    settings, store = request.app[SETTINGS], request.app[STORE]
    bodies.check_json_type(request)
    body = await bodies.read_body(request, settings.max_body_bytes)
    payload = bodies.parse_json(body)
    provider = payload.get("provider")
    if not isinstance(provider, str) or provider not in PROVIDERS:
        raise ApiError(400, "unknown_provider", f"provider must be one of {', '.join(PROVIDERS)}")
    try:
        job_id = fields.job_id(payload.get("id"), "id")
    except PayloadError as exc:
        raise ApiError(400, "invalid_payload", str(exc)) from exc
    model = payload.get("model", catalog.PROVIDERS[provider].default_model)
    if model is not None and (
        not isinstance(model, str) or not 0 < len(model) <= 128 or not model.isprintable()
    ):
        raise ApiError(400, "invalid_payload", "model must be a printable string of 1 to 128 characters")
    download_url = payload.get("download_url")
    if download_url is not None:
        try:
            download_url = fields.url(download_url, "download_url")
        except PayloadError as exc:
            raise ApiError(400, "invalid_payload", str(exc)) from exc
    existed = await store.get_job(provider, job_id) is not None
    params: dict[str, str] = {"model": model} if model else {}
    if download_url:
        params["download_url"] = download_url
    delivery = request.app[SCRUB].delivery(request, "api", provider, body, job_id)
    result = await store.intake(delivery, [Observation(provider, job_id, "tracked", params=params)])
    request.app[METRICS].delivery(provider, "api", result.verdict.value, len(result.events))
    assert result.job is not None
    return web.json_response(
        job_view(result.job, await store.outbox_for_job(provider, job_id)),
        status=200 if existed else 201,
    )


async def event_stream(request: web.Request) -> web.StreamResponse:
    """Every log entry as SSE, `id:` its sequence number; resumes after `Last-Event-ID`."""
    store = request.app[STORE]
    raw = request.headers.get("Last-Event-ID", request.query.get("after", "0")).strip() or "0"
    if not raw.isdigit():
        raise ApiError(400, "bad_parameter", "Last-Event-ID must be an event sequence number")
    last = int(raw)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    while True:
        events = await store.events_after(last, 500)
        if events:
            chunk = "".join(
                f"id: {e.seq}\nevent: {e.type}\ndata: {json.dumps(e.to_json())}\n\n" for e in events
            )
            await response.write(chunk.encode())
            last = events[-1].seq
            continue
        if not await store.wait_for_append(HEARTBEAT_SECONDS):
            await response.write(b": keep-alive\n\n")


OUTBOX_STATUSES = ("pending", "done", "dead")


def _time_param(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def list_outbox(request: web.Request) -> web.Response:
    """`GET /api/outbox?status=&sink=&since=&until=&limit=`: downloads and notifications."""
    status = request.query.get("status")
    if status is not None and status not in OUTBOX_STATUSES:
        raise ApiError(400, "bad_parameter", f"status must be one of {', '.join(OUTBOX_STATUSES)}")
    entries = await request.app[STORE].outbox(
        status=status,
        sink=request.query.get("sink"),
        since=_time_param(request.query.get("since"), "since"),
        until=_time_param(request.query.get("until"), "until"),
        limit=_int_param(request, "limit", 100, MAX_PAGE),
    )
    return web.json_response({"items": [outbox_view(e) for e in entries]})


async def replay_entry(request: web.Request) -> web.Response:
    """`POST /api/outbox/{id}/replay`: run one download or notification again."""
    raw = request.match_info["entry_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, "not_found", "no such outbox item")
    try:
        event = await replay.replay_one(request.app[STORE], int(raw))
    except replay.NotReplayable as exc:
        raise ApiError(409 if "pending" in str(exc) else 404, "not_replayable", str(exc)) from exc
    return web.json_response({"replayed": 1, "event": event.to_json() if event else None})


async def replay_outbox(request: web.Request) -> web.Response:
    """`POST /api/outbox/replay {"sink"?, "since"?, "until"?}`: every dead item matching."""
    doc: dict[str, object] = {}
    if request.can_read_body:
        bodies.check_json_type(request)
        doc = bodies.parse_json(await bodies.read_body(request, 64 * 1024))
    unknown = sorted(set(doc) - {"sink", "since", "until"})
    if unknown:
        raise ApiError(400, "invalid_payload", f"unknown field {unknown[0][:64]!r}")
    sink = doc.get("sink")
    if sink is not None and (not isinstance(sink, str) or len(sink) > 64):
        raise ApiError(400, "invalid_payload", "sink must be a sink name")
    count = await replay.replay_dead(
        request.app[STORE],
        sink=sink,
        since=_time_param(doc.get("since"), "since"),
        until=_time_param(doc.get("until"), "until"),
    )
    return web.json_response({"replayed": count})
