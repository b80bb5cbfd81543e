"""The baseline: a bare aiohttp handler that parses the same JSON and answers 200, storing nothing."""

from __future__ import annotations

import sys

from aiohttp import web

from jobtrail.receiver.bodies import parse_json


async def handle(request: web.Request) -> web.Response:
    """Parse the body with the same function jobtrail uses; store nothing; answer 200."""
    payload = parse_json(await request.read())
    return web.json_response({"delivery_id": 0, "verdict": "accepted", "id": payload["request_id"]})


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/webhooks/pixazo/{token}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
