"""`/healthz` (alive), `/readyz` (store reachable, listeners' state), `/metrics`.

`/readyz` answers 503 only when the store is unreachable: then nothing can be accepted.
A listener or poller that failed (a refused key, a stream told to stop) makes the status
`degraded` with its reason, but webhooks are still taken, so the answer stays 200.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from jobtrail.receiver.answer import json_answer
from jobtrail.receiver.auth import bearer_matches
from jobtrail.receiver.errors import ApiError
from jobtrail.receiver.keys import HEALTH, LEADERSHIP, METRICS, REDACT, SETTINGS, STORE, TAIL
from jobtrail.receiver.metrics import CONTENT_TYPE
from jobtrail.store.base import StoreError

log = structlog.get_logger(__name__)


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def healthz(request: web.Request) -> web.Response:
    return json_answer({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """Unauthenticated: every text in it (a provider's or the database's error, which may
    quote a key or a password) goes through the logs' redaction first."""
    board, store, redact = request.app[HEALTH], request.app[STORE], request.app[REDACT]
    listeners = board.snapshot()
    role = request.app[LEADERSHIP].role
    try:
        await store.ping()
    except StoreError as exc:
        body = {
            "status": "unready",
            "role": role,
            "store": {"ok": False, "kind": store.kind, "error": str(exc)},
            "listeners": listeners,
        }
        return json_answer(redact.scrub(body), status=503)
    status = "ready" if board.healthy() else "degraded"
    body = {"status": status, "role": role, "store": {"ok": True, "kind": store.kind}, "listeners": listeners}
    return json_answer(redact.scrub(body))


async def metrics(request: web.Request) -> web.Response:
    """Open unless `JOBTRAIL_METRICS_TOKEN` is set; then a scraper sends it as a bearer
    token (Prometheus: `authorization: {credentials: ...}`)."""
    expected = request.app[SETTINGS].metrics_token
    if expected and not bearer_matches(request, expected):
        raise ApiError(401, "unauthorized", "/metrics needs JOBTRAIL_METRICS_TOKEN as a bearer token")
    metrics, store = request.app[METRICS], request.app[STORE]
    metrics.streams.set(request.app[TAIL].followers)
    try:
        await metrics.refresh(store)
    except StoreError as exc:  # the counters are still worth a scrape; the gauges keep their last values
        log.warning("metrics_gauges_unavailable", error=str(exc))
    return web.Response(
        body=metrics.render(), headers={"Content-Type": CONTENT_TYPE, "X-Content-Type-Options": "nosniff"}
    )
