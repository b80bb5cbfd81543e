"""The console's pages (GET): overview, jobs, a job, outbox, deliveries.

Each reads the store through the same port and the same filters as the API
(receiver/api.py, receiver/deliveries.py), so a filter means the same in both; a bad
filter shows its message above the page instead of a JSON error.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from jobtrail.console.guard import Session, refused
from jobtrail.console.render import RATE, Chart, html
from jobtrail.core.model import PROVIDERS, Status, Verdict, utcnow
from jobtrail.receiver import api, deliveries, history, params
from jobtrail.receiver.errors import ApiError
from jobtrail.receiver.keys import HEALTH, LEADERSHIP, REDACT, STORE
from jobtrail.store.base import Page, StoredDelivery

CHART_HOURS = 6
# What a live part listens for: the job reports, and the dispatch records (download and
# notification attempts, replays) that change a job page's downloads and notifications.
JOB_TYPES = " ".join(f"job.{word}" for word in (*(s.value for s in Status), "tracked", "conflict"))
EVENT_TYPES = (
    JOB_TYPES
    + " "
    + " ".join(
        f"{noun}.{word}"
        for noun, success in (("download", "completed"), ("notification", "delivered"))
        for word in (success, "failed", "dead", "replayed", "retried")
    )
)
OUTBOX_PAGE = 100
_ID = re.compile(r"[0-9]{1,18}")


def _base(session: Session, nav: str, **context: Any) -> dict[str, Any]:
    return {"session": session, "nav": nav, "providers": PROVIDERS, **context}


async def overview(request: web.Request, session: Session) -> web.StreamResponse:
    store = request.app[STORE]
    counts = await store.job_counts()
    gauges = await store.gauges()
    now = utcnow()
    per_minute = await request.app[RATE].per_minute(store, now, CHART_HOURS)
    statuses = [s.value for s in Status]
    table = [
        (
            provider,
            [counts.by_status.get((provider, s), 0) for s in statuses],
            counts.conflicts.get(provider, 0),
        )
        for provider in PROVIDERS
    ]
    dead = sorted((sink, n) for (_, sink, status), n in gauges.outbox.items() if status == "dead" and n)
    context = _base(
        session,
        "overview",
        statuses=statuses,
        table=table,
        dead=dead,
        dead_total=sum(n for _, n in dead),
        conflicts=sum(counts.conflicts.values()),
        health=request.app[HEALTH].snapshot(),
        role=request.app[LEADERSHIP].role,
        store_kind=store.kind,
        chart=Chart(per_minute, now, CHART_HOURS),
    )
    return html("overview.html", context)


async def _jobs(request: web.Request) -> tuple[Page | None, str | None]:
    query = {k: v for k, v in request.query.items() if v != ""}  # an empty form field: no filter
    try:
        params.known(request.query, (*api.JOB_FILTERS, "cursor"))
        return await api.jobs_page(request.app[STORE], _multi(query)), None
    except ApiError as exc:
        return None, exc.message


async def jobs(request: web.Request, session: Session) -> web.StreamResponse:
    page, error = await _jobs(request)
    store = request.app[STORE]
    context = _base(
        session,
        "jobs",
        page=page,
        error=error,
        query={k: v for k, v in request.query.items() if k != "cursor"},
        statuses=[s.value for s in Status],
        last_seq=await store.last_seq(),
        live=not request.query.get("cursor"),
        types=JOB_TYPES,
    )
    return html("jobs.html", context, status=400 if error else 200)


async def job_rows(request: web.Request, session: Session) -> web.StreamResponse:
    """The jobs table's rows alone, for the live refresh of the first page."""
    page, error = await _jobs(request)
    return html("job_rows.html", {"page": page, "error": error}, status=400 if error else 200)


async def job(request: web.Request, session: Session) -> web.StreamResponse:
    store = request.app[STORE]
    provider, job_id = request.match_info["provider"], request.match_info["job_id"]
    found = await store.get_job(provider, job_id) if provider in PROVIDERS else None
    if found is None:
        return refused(f"No {provider[:32]} job {job_id[:256]} is tracked.", 404)
    events = await history.annotated(store, provider, job_id, limit=10_000)
    kept = {d.id: d for d in await store.deliveries(provider=provider, job_id=job_id, limit=1_000)}
    outbox = await store.outbox_for_job(provider, job_id)
    polls = await store.polls(provider, job_id)
    attempts: dict[str, list[Any]] = {}
    for event, _ in events:
        key = event.data.get("key")
        if event.source == "dispatch" and isinstance(key, str):
            attempts.setdefault(key, []).append(event)
    rows: list[tuple[Any, ...]] = [
        ("event", e.at, e, effect, kept.get(e.delivery_id or 0)) for e, effect in events
    ]
    rows += [
        ("duplicate", d.delivery.received_at, None, None, d)
        for d in kept.values()
        if d.verdict is Verdict.DUPLICATE
    ]
    rows.sort(key=lambda row: (row[1], row[2].seq if row[2] else 0))
    redact = request.app[REDACT]
    raw = {
        d.id: (
            redact.scrub(dict(d.delivery.headers)),
            redact.scrub(bytes(d.delivery.body).decode("utf-8", "replace")),
        )
        for d in kept.values()
    }
    context = _base(
        session,
        "jobs",
        job=found,
        polls=polls,
        rows=rows,
        downloads=[e for e in outbox if e.item.kind == "download"],
        notifications=[e for e in outbox if e.item.kind == "notify"],
        attempts=attempts,
        raw=raw,
        types=EVENT_TYPES,
        last_seq=events[-1][0].seq if events else 0,
        here=request.path,
    )
    return html("job.html", context)


async def outbox(request: web.Request, session: Session) -> web.StreamResponse:
    store = request.app[STORE]
    error, items, more = None, [], False
    query = {k: v for k, v in request.query.items() if v != ""}
    try:
        params.known(request.query, (*api.OUTBOX_FILTERS, "after"))
        after = params.whole(query.get("after"), "after", 0)
        found = await store.outbox(**api.outbox_filter(_multi(query)), after=after, limit=OUTBOX_PAGE + 1)
        items, more = found[:OUTBOX_PAGE], len(found) > OUTBOX_PAGE
    except ApiError as exc:
        error = exc.message
    context = _base(
        session,
        "outbox",
        items=items,
        more=more,
        error=error,
        query={k: v for k, v in request.query.items() if k != "after"},
        sinks=api.SINKS,
        here=request.path_qs,
    )
    return html("outbox.html", context, status=400 if error else 200)


async def deliveries_page(request: web.Request, session: Session) -> web.StreamResponse:
    store = request.app[STORE]
    error, found, more = None, [], False
    query = {k: v for k, v in request.query.items() if v != ""}
    try:
        params.known(request.query, deliveries.FILTERS)
        wanted = deliveries.delivery_filter(_multi(query))
        found = await store.delivery_page(wanted, OUTBOX_PAGE + 1)
        found, more = found[:OUTBOX_PAGE], len(found) > OUTBOX_PAGE
    except ApiError as exc:
        error = exc.message
    context = _base(
        session,
        "deliveries",
        found=found,
        more=more,
        error=error,
        query={k: v for k, v in request.query.items() if k != "before"},
        verdicts=[v.value for v in Verdict],
    )
    return html("deliveries.html", context, status=400 if error else 200)


async def delivery(request: web.Request, session: Session) -> web.StreamResponse:
    raw = request.match_info["delivery_id"]
    found: StoredDelivery | None = None
    if _ID.fullmatch(raw):
        found = await request.app[STORE].delivery(int(raw))
    if found is None:
        return refused("No such delivery.", 404)
    redact = request.app[REDACT]
    shown = _base(
        session,
        "deliveries",
        d=found,
        headers=redact.scrub(dict(found.delivery.headers)),
        body=redact.scrub(bytes(found.delivery.body).decode("utf-8", "replace")),
    )
    return html("delivery.html", shown)


def _multi(query: dict[str, str]) -> MultiDictProxy[str]:
    return MultiDictProxy(MultiDict(query))
