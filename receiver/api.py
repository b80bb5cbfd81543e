"""The read/write API under `/api`: jobs, their timelines, tracking, the event stream."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from jobtrail.core import turns
from jobtrail.core.model import PROVIDERS, Event, Observation, Status
from jobtrail.dispatch import replay
from jobtrail.providers import catalog, fields
from jobtrail.providers.fields import PayloadError
from jobtrail.receiver import bodies, history, params, stream
from jobtrail.receiver.answer import json_answer
from jobtrail.receiver.auth import COOKIE, bearer_matches
from jobtrail.receiver.errors import ApiError, Handler, not_configured
from jobtrail.receiver.keys import METRICS, SCRUB, SESSIONS, SETTINGS, STORE
from jobtrail.receiver.views import delivery_view, detail_view, job_view, one_job, outbox_view
from jobtrail.store.base import BadCursor, JobFilter, Page, Store

MAX_PAGE = 500
REPLAY_LIMIT = 10_000
_ID = re.compile(r"[0-9]{1,18}")


def setup(app: web.Application) -> None:
    app.router.add_get("/api/jobs", guarded(list_jobs))
    app.router.add_post("/api/jobs", guarded(track_job))
    app.router.add_get("/api/jobs/{provider}/{job_id}", guarded(show_job))
    app.router.add_get("/api/jobs/{provider}/{job_id}/events", guarded(job_events))
    app.router.add_get("/api/events", guarded(stream.event_stream, session=True))
    app.router.add_get("/api/outbox", guarded(list_outbox))
    app.router.add_post("/api/outbox/replay", guarded(replay_outbox))
    app.router.add_post("/api/outbox/{entry_id}/replay", guarded(replay_entry))
    app.router.add_post("/api/outbox/{entry_id}/retry", guarded(retry_entry))


def guarded(handler: Handler, *, session: bool = False) -> Handler:
    """Require `Authorization: Bearer <JOBTRAIL_API_TOKEN>` when a token is configured;
    with `session`, a console session's cookie will do instead (the console's
    `EventSource` cannot send a header; only for reads: a cookie rides along on requests
    other sites make, so no route that changes anything takes one)."""

    @functools.wraps(handler)
    async def check(request: web.Request) -> web.StreamResponse:
        token = request.app[SETTINGS].api_token
        if (
            token
            and not bearer_matches(request, token)
            and not (session and request.app[SESSIONS].nonce(request.cookies.get(COOKIE)))
        ):
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <JOBTRAIL_API_TOKEN>")
        return await handler(request)

    return check


def _provider(value: str | None) -> str | None:
    if value is not None and value not in PROVIDERS:
        raise ApiError(400, "unknown_provider", f"provider must be one of {', '.join(PROVIDERS)}")
    return value


JOB_FILTERS = ("provider", "status", "q", "since", "until", "conflict")


def job_filter(query: MultiMapping[str]) -> JobFilter:
    """`provider`, `status`, `q` (part of the id), `since` and `until` (created), `conflict`."""
    return JobFilter(
        provider=_provider(query.get("provider")),
        status=params.choice(query.get("status"), "status", (s.value for s in Status)),
        q=params.text(query.get("q"), "q"),
        since=params.time(query.get("since"), "since"),
        until=params.time(query.get("until"), "until"),
        conflict=params.flag(query.get("conflict"), "conflict"),
    )


async def jobs_page(store: Store, query: MultiMapping[str], default_limit: int = 50) -> Page:
    """The page of jobs a query asks for (`JOB_FILTERS`, `limit`, `cursor`)."""
    wanted = job_filter(query)
    try:
        return await store.list_jobs(
            **wanted._asdict(),
            limit=params.whole(query.get("limit"), "limit", default_limit, MAX_PAGE, low=1),
            cursor=query.get("cursor"),
        )
    except BadCursor as exc:
        raise ApiError(400, "bad_cursor", str(exc)) from exc


async def list_jobs(request: web.Request) -> web.Response:
    query = request.query
    params.known(query, (*JOB_FILTERS, "limit", "cursor"))
    page = await jobs_page(request.app[STORE], query)
    outbox = await request.app[STORE].outbox_for_jobs([(job.provider, job.id) for job in page.jobs])
    views = await turns.each(page.jobs, lambda job: job_view(job, outbox[(job.provider, job.id)]))
    return json_answer({"jobs": views, "next_cursor": page.next_cursor})


async def show_job(request: web.Request) -> web.Response:
    store = request.app[STORE]
    provider, job_id = _provider(request.match_info["provider"]), request.match_info["job_id"]
    assert provider is not None
    found = await store.job_detail(provider, job_id)
    if found is None:
        raise ApiError(404, "job_not_found", f"no {provider} job {job_id[:256]!r} is tracked")
    return json_answer(detail_view(found))


async def job_events(request: web.Request) -> web.Response:
    store = request.app[STORE]
    provider, job_id = _provider(request.match_info["provider"]), request.match_info["job_id"]
    assert provider is not None
    params.known(request.query, ("after", "limit"))
    after = params.whole(request.query.get("after"), "after", 0)
    limit = params.whole(request.query.get("limit"), "limit", 1000, 10_000, low=1)
    if await store.get_job(provider, job_id) is None:
        raise ApiError(404, "job_not_found", f"no {provider} job {job_id[:256]!r} is tracked")
    events = await history.annotated(store, provider, job_id, after=after, limit=limit)
    found = await history.duplicates(store, provider, job_id)
    return json_answer(
        {
            "events": [{**e.to_json(), "effect": history.effect_json(effect)} for e, effect in events],
            "duplicates": [delivery_view(d) for d in found],
        }
    )


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
    wait_for_key = payload.get("wait_for_key", False)
    if not isinstance(wait_for_key, bool):
        raise ApiError(400, "invalid_payload", "wait_for_key must be true or false")
    if not existed and not wait_for_key and not settings.provider(provider).active:
        raise ApiError(
            409,
            "provider_not_configured",
            not_configured(provider, "track jobs of") + '; or send "wait_for_key": true to track it now',
        )
    params: dict[str, str] = {"model": model} if model else {}
    if download_url:
        params["download_url"] = download_url
    delivery = request.app[SCRUB].delivery(request, "api", provider, body, job_id)
    result = await store.intake(delivery, [Observation(provider, job_id, "tracked", params=params)])
    request.app[METRICS].delivery(provider, "api", result.verdict.value)
    assert result.job is not None
    return json_answer(await one_job(store, result.job), status=200 if existed else 201)


OUTBOX_STATUSES = ("pending", "done", "dead")
SINKS = ("download", "slack", "webhook", "email")


def _text(value: object, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "bad_parameter", f"{name} must be a string")
    return value


async def list_outbox(request: web.Request) -> web.Response:
    """`GET /api/outbox?status=&sink=&since=&until=&limit=`: downloads and notifications."""
    query = request.query
    params.known(query, (*OUTBOX_FILTERS, "limit"))
    entries = await request.app[STORE].outbox(
        **outbox_filter(query), limit=params.whole(query.get("limit"), "limit", 100, MAX_PAGE, low=1)
    )
    return json_answer({"items": await turns.each(entries, outbox_view)})


OUTBOX_FILTERS = ("status", "sink", "since", "until")


def outbox_filter(query: MultiMapping[str]) -> dict[str, Any]:
    """The keywords of `Store.outbox` a query asks for."""
    return {
        "status": params.choice(query.get("status"), "status", OUTBOX_STATUSES),
        "sink": params.choice(query.get("sink"), "sink", SINKS),
        "since": params.time(query.get("since"), "since"),
        "until": params.time(query.get("until"), "until"),
    }


async def replay_entry(request: web.Request) -> web.Response:
    """`POST /api/outbox/{id}/replay`: run one download or notification again."""
    return await _run_entry(request, replay.replay_one, "replayed", "not_replayable")


async def retry_entry(request: web.Request) -> web.Response:
    """`POST /api/outbox/{id}/retry`: run a pending or dead item now (a pending one keeps
    its attempt count; a dead one is replayed)."""
    return await _run_entry(request, replay.retry_now, "retried", "not_retryable")


async def _run_entry(
    request: web.Request,
    run: Callable[[Store, int], Awaitable[Event | None]],
    done: str,
    refused: str,
) -> web.Response:
    """One outbox item run again by `run`: 404 for an unknown one, 409 when its state
    forbids it; answers `{done: 1, "event"}`."""
    raw = request.match_info["entry_id"]
    if not _ID.fullmatch(raw):
        raise ApiError(404, "not_found", "no such outbox item")
    try:
        event = await run(request.app[STORE], int(raw))
    except replay.NotReplayable as exc:
        raise ApiError(404 if exc.unknown else 409, refused, str(exc)) from exc
    return json_answer({done: 1, "event": event.to_json() if event else None})


async def replay_outbox(request: web.Request) -> web.Response:
    """`POST /api/outbox/replay {"sink"?, "since"?, "until"?, "limit"?}`: queue the dead
    items matching again, each once, at most `limit` (default and most: REPLAY_LIMIT) per
    request, and answer at once with how many were queued and whether more are dead;
    the worker runs them."""
    doc: dict[str, object] = {}
    if request.can_read_body:
        bodies.check_json_type(request)
        doc = bodies.parse_json(await bodies.read_body(request, 64 * 1024))
    unknown = sorted(set(doc) - {"sink", "since", "until", "limit"})
    if unknown:
        raise ApiError(400, "invalid_payload", f"unknown field {unknown[0][:64]!r}")
    limit = doc.get("limit", REPLAY_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= REPLAY_LIMIT:
        raise ApiError(400, "bad_parameter", f"limit must be a whole number from 1 to {REPLAY_LIMIT}")
    done = await replay.replay_dead(
        request.app[STORE],
        sink=params.choice(_text(doc.get("sink"), "sink"), "sink", SINKS),
        since=params.time(doc.get("since"), "since"),
        until=params.time(doc.get("until"), "until"),
        limit=limit,
    )
    return json_answer({"replayed": done.queued, "more": done.more})
