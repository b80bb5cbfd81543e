"""The application factory: `create_app(settings, store) -> web.Application`.

`with_listeners` adds the intake loops (pollers, the Oxen stream) to the app's lifecycle:
started with the app, cancelled in its cleanup. `jobtrail serve` does; tests of the HTTP
surface alone do not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from core.settings import Settings
from listeners import run
from listeners.health import Health
from receiver import api, health, webhooks
from receiver.bodies import HeaderScrubber
from receiver.errors import error_middleware
from receiver.keys import HEALTH, METRICS, SCRUB, SETTINGS, STORE
from receiver.metrics import Metrics
from store.base import Store


def create_app(settings: Settings, store: Store, *, with_listeners: bool = False) -> web.Application:
    """Routes and middleware over an already opened store."""
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[STORE] = store
    app[METRICS] = Metrics()
    app[SCRUB] = HeaderScrubber(settings.secrets())
    app[HEALTH] = Health()
    if with_listeners:
        app.cleanup_ctx.append(_listeners)
    webhooks.setup(app)
    api.setup(app)
    health.setup(app)
    return app


async def _listeners(app: web.Application) -> AsyncIterator[None]:
    async with run.running(app[SETTINGS], app[STORE], app[HEALTH]):
        yield
