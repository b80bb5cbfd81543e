"""The baseline for bench/latency: a bare aiohttp app that answers a webhook 200 and then
at once POSTs a Standard-Webhooks-signed notification, with no log and no outbox.

    python -m bench.latency.relay PORT TARGET_URL SECRET
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import orjson
from aiohttp import web

from jobtrail.dispatch import signing


def make_app(target: str, secret: str) -> web.Application:
    tasks: set[asyncio.Task[None]] = set()

    async def forward(doc: dict[str, object], session: aiohttp.ClientSession) -> None:
        body = orjson.dumps({"type": "job.failed", "data": {"id": doc["request_id"]}})
        msg_id = signing.webhook_id(str(doc["request_id"]))
        headers = signing.headers(msg_id, int(time.time()), body, [secret])
        async with session.post(target, data=body, headers=headers) as response:
            await response.read()

    async def hook(request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        task = asyncio.create_task(forward(doc, request.app["session"]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return web.json_response({"ok": True})

    async def session(app: web.Application):  # type: ignore[no-untyped-def]
        app["session"] = aiohttp.ClientSession()
        yield
        await app["session"].close()

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_post("/webhooks/pixazo/{token}", hook)
    app.router.add_get("/healthz", lambda r: web.json_response({"status": "alive"}))
    return app


if __name__ == "__main__":
    web.run_app(
        make_app(sys.argv[2], sys.argv[3]),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=None,
        access_log=None,
    )
