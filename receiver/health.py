"""`/healthz` (alive), `/readyz` (store reachable, listeners' state), `/metrics`.

`/readyz` answers 503 only when the store is unreachable: then nothing can be accepted.
A listener or poller that failed (a refused key, a stream told to stop) makes the status
`degraded` with its reason, but webhooks are still taken, so the answer stays 200.
"""

from __future__ import annotations

from aiohttp import web

from jobtrail.receiver.keys import HEALTH, LEADERSHIP, METRICS, REDACT, STORE, TAIL
from jobtrail.receiver.metrics import render_components
from jobtrail.store.base import StoreError


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


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
        return web.json_response(redact.scrub(body), status=503)
    status = "ready" if board.healthy() else "degraded"
    body = {"status": status, "role": role, "store": {"ok": True, "kind": store.kind}, "listeners": listeners}
    return web.json_response(redact.scrub(body))


async def metrics(request: web.Request) -> web.Response:
    counts = request.app[METRICS]
    counts.streams = request.app[TAIL].followers
    return web.Response(
        text=counts.render() + render_components(request.app[HEALTH].snapshot()),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )
