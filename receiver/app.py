"""The application factory: `create_app(settings, store) -> web.Application`."""

from __future__ import annotations

from aiohttp import web

from core.settings import Settings
from receiver import api, health, webhooks
from receiver.bodies import HeaderScrubber
from receiver.errors import error_middleware
from receiver.keys import METRICS, SCRUB, SETTINGS, STORE
from receiver.metrics import Metrics
from store.base import Store


def create_app(settings: Settings, store: Store) -> web.Application:
    """Routes and middleware over an already opened store."""
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[STORE] = store
    app[METRICS] = Metrics()
    app[SCRUB] = HeaderScrubber(settings.secrets())
    webhooks.setup(app)
    api.setup(app)
    health.setup(app)
    return app
