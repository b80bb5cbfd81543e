"""Starting and stopping every intake loop of a running service.

`running(settings, store, health)` starts one poller per provider whose API key is set,
and the Oxen SSE listener when `OXEN_API_KEY` is set (each reconnect makes the Oxen
poller poll every open job at once). A loop that dies of a bug is logged, marked failed
and restarted after a pause; leaving the context cancels every task and closes every
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import aiohttp
import structlog

from jobtrail.core.model import PROVIDERS, utcnow
from jobtrail.core.settings import Settings
from jobtrail.listeners.poller import Poller
from jobtrail.listeners.schedule import PollSchedule
from jobtrail.listeners.sse import SSEListener
from jobtrail.listeners.sse_decoder import SSEEvent
from jobtrail.providers import oxen
from jobtrail.providers.polling import SPECS
from jobtrail.runtime import http
from jobtrail.runtime.health import Component, Health
from jobtrail.runtime.retention import Pruner
from jobtrail.runtime.supervise import supervise
from jobtrail.store.base import Store

log = structlog.get_logger(__name__)


@contextlib.asynccontextmanager
async def running(settings: Settings, store: Store, health: Health) -> AsyncIterator[dict[str, Poller]]:
    """Run the listeners, the pollers and the pruner (retention) while the context is
    open; yields the pollers."""
    sessions: list[aiohttp.ClientSession] = []
    loops: list[tuple[Component, Callable[[], Awaitable[None]]]] = []
    pollers: dict[str, Poller] = {}
    tuning = settings.listeners
    schedule = PollSchedule(tuning.poll_min_interval, tuning.poll_max_interval, tuning.poll_age_factor)
    for name in PROVIDERS:
        provider = settings.provider(name)
        if not provider.active:
            continue
        session = http.new_session(tuning.poll_concurrency)
        sessions.append(session)
        component = health.component(f"{name}.poller", "poller")
        poller = Poller(
            provider,
            SPECS[name],
            store,
            component,
            session,
            data_dir=settings.data_dir,
            schedule=schedule,
            concurrency=tuning.poll_concurrency,
            max_result_bytes=settings.dispatch.download_max_bytes,
        )
        pollers[name] = poller
        loops.append((component, poller.run))
    if settings.provider(oxen.NAME).active:
        session = http.new_session(1)
        sessions.append(session)
        component = health.component("oxen.sse", "sse")
        listener = SSEListener(
            oxen.events_call(settings.provider(oxen.NAME)),
            record_stream(store),
            component,
            session,
            on_connect=pollers[oxen.NAME].poll_all_now,
            read_timeout=tuning.sse_read_timeout,
        )
        loops.append((component, listener.run))
    if settings.retention.active:  # a singleton like the listeners: the leader prunes
        component = health.component("retention", "pruner")
        loops.append((component, Pruner(settings.retention, store, component).run))
    tasks = [asyncio.create_task(supervise(c, run), name=f"listener-{c.name}") for c, run in loops]
    try:
        yield pollers
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in sessions:
            await session.close()


def record_stream(store: Store) -> Callable[[Sequence[SSEEvent]], Awaitable[None]]:
    """The Oxen stream's handler: every event of a read, recorded in one intake batch."""

    async def record(events: Sequence[SSEEvent]) -> None:
        at = utcnow()
        await store.intake_many([oxen.intake_request(e.event, e.data, e.id, at) for e in events])

    return record
