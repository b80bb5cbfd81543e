"""`/healthz` (alive), `/readyz` (store reachable, listeners' state), `/metrics`."""

from __future__ import annotations

from aiohttp import web

from receiver.keys import METRICS, STORE
from store.base import StoreError


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[STORE].ping()
    except StoreError as exc:
        return web.json_response(
            {"status": "unready", "store": {"ok": False, "error": str(exc)}, "listeners": {}},
            status=503,
        )
    return web.json_response({"status": "ready", "store": {"ok": True}, "listeners": {}})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[METRICS].render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )
