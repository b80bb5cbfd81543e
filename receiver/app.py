"""The application factory: `create_app(settings, store) -> web.Application`.

`background=True` adds the long-running loops to the app's lifecycle: the intake loops
(pollers, the Oxen stream) and the outbox worker, started with the app and cancelled in
its cleanup. `jobtrail serve` does; tests of the HTTP surface alone do not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from jobtrail.console import routes as console
from jobtrail.core.logs import Redactor
from jobtrail.core.settings import Settings
from jobtrail.dispatch.run import running as dispatching
from jobtrail.listeners import refresh, run
from jobtrail.receiver import api, deliveries, health, openapi, submit, webhooks
from jobtrail.receiver.auth import Sessions
from jobtrail.receiver.bodies import HeaderScrubber
from jobtrail.receiver.errors import error_middleware
from jobtrail.receiver.keys import HEALTH, LEADERSHIP, METRICS, REDACT, SCRUB, SESSIONS, SETTINGS, STORE, TAIL
from jobtrail.receiver.metrics import Metrics
from jobtrail.receiver.tail import Tail
from jobtrail.runtime.health import Health
from jobtrail.runtime.identity import new_owner
from jobtrail.runtime.leader import Leadership, leading
from jobtrail.store.base import Store


def create_app(settings: Settings, store: Store, *, background: bool = False) -> web.Application:
    """Routes and middleware over an already opened store."""
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[STORE] = store
    app[METRICS] = Metrics()
    app[SCRUB] = HeaderScrubber(settings.secrets())
    app[REDACT] = Redactor(settings.secrets())
    app[HEALTH] = Health()
    app[LEADERSHIP] = Leadership(
        store, app[HEALTH].component("leader", "leadership"), new_owner(), ttl=settings.listeners.leader_ttl
    )
    app[TAIL] = Tail(store)
    app[SESSIONS] = Sessions(settings.api_token)
    app[METRICS].watch(store, app[HEALTH], app[LEADERSHIP])
    app.on_shutdown.append(_end_streams)
    if background:
        app.cleanup_ctx.append(_background)
    webhooks.setup(app)
    api.setup(app)
    submit.setup(app)
    health.setup(app)
    deliveries.setup(app)
    openapi.setup(app)
    console.setup(app)
    return app


async def _end_streams(app: web.Application) -> None:
    """Stopping: every event stream ends now, not at the shutdown timeout."""
    app[TAIL].close()


async def _background(app: web.Application) -> AsyncIterator[None]:
    """Every replica takes webhooks and works the outbox; the leader alone runs the
    listeners (the Oxen stream, the pollers)."""
    settings, store, health, leadership = app[SETTINGS], app[STORE], app[HEALTH], app[LEADERSHIP]
    async with (
        refresh.refreshing(settings, store) as fresh_url,
        dispatching(settings, store, health, fresh_url, leadership.owner),
        leading(leadership, lambda: run.running(settings, store, health)),
    ):
        yield
