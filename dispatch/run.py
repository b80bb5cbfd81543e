"""Starting and stopping the outbox worker of a running service.

`running(settings, store, health)` runs the worker with a download pool and a
notification pool, until the context is left. Leases left by a process that died are
not released here (they may be another live process's): they end by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import structlog

from core.model import Delivery, OutboxEntry, utcnow
from core.settings import Settings
from dispatch import download
from dispatch.notify import Notifier
from dispatch.schedule import Outcome, RetrySchedule
from dispatch.worker import Pool, Worker
from listeners import http
from listeners.health import Health
from listeners.run import supervise
from providers.polling import SPECS
from providers.replies import Observed
from store.base import Store

log = structlog.get_logger(__name__)

REFRESHABLE = ("oxen", "apiframe", "pixazo")
LEASE = 60.0  # seconds; renewed while an attempt runs, so a dead process's work waits at most this


class Refresher:
    """Asks the provider for a fresh result URL when one expired (Oxen, Apiframe and
    Pixazo hand out a new one in their status document). The answer is recorded like any
    poll."""

    def __init__(self, settings: Settings, store: Store, session: aiohttp.ClientSession) -> None:
        self.settings, self.store, self.session = settings, store, session

    async def fresh_url(self, entry: OutboxEntry) -> str | None:
        name = entry.item.provider
        provider = self.settings.provider(name)
        job = await self.store.get_job(name, entry.item.job_id)
        if name not in REFRESHABLE or not provider.active or job is None:
            return None
        spec = SPECS[name]
        call = spec.status_call(provider, job)
        answer = await http.send(self.session, call, aiohttp.ClientTimeout(total=30))
        reply = spec.read(job, answer.status, answer.headers, answer.body, utcnow())
        if not isinstance(reply, Observed) or reply.observation.job_id != job.id:
            return None
        delivery = Delivery("poll", name, utcnow(), answer.headers, answer.body, job.id)
        await self.store.intake(delivery, [reply.observation])
        urls = reply.observation.result_urls
        index = int(entry.item.payload.get("index", 0))
        return urls[index] if index < len(urls) else None


@contextlib.asynccontextmanager
async def running(settings: Settings, store: Store, health: Health) -> AsyncIterator[Worker]:
    tuning = settings.dispatch
    sessions = [
        download.new_session(settings.download_allow_hosts, tuning.download_concurrency),
        aiohttp.ClientSession(headers={"User-Agent": "jobtrail"}),
        http.new_session(2),
    ]
    downloads, notifications, polls = sessions
    downloader = download.Downloader(
        downloads,
        settings.data_dir,
        settings.download_allow_hosts,
        max_bytes=tuning.download_max_bytes,
        timeout=tuning.download_timeout,
        read_timeout=tuning.download_read_timeout,
    )
    refresher = Refresher(settings, store, polls)
    notifier = Notifier(store, settings.notify, notifications, tuning.notify_timeout)

    async def fetch(entry: OutboxEntry) -> Outcome:
        outcome = await downloader.fetch(entry)
        if not outcome.details.get("expired"):
            return outcome
        old = entry.item.payload.get("url")
        try:
            fresh = await refresher.fresh_url(entry)
        except (aiohttp.ClientError, TimeoutError, http.AnswerTooLarge) as exc:
            log.info("download_refresh_failed", key=entry.item.key, error=str(exc))
            return outcome
        if not fresh or fresh == old:
            return outcome
        payload = {**entry.item.payload, "url": fresh, "expired_url": old}
        details = {**outcome.details, "refreshed_url": True}
        return replace(
            outcome,
            error=f"{outcome.error}; a fresh URL was fetched",
            retry_now=True,
            payload=payload,
            details=details,
        )

    pools = [
        Pool("download", tuning.download_concurrency, LEASE, fetch),
        Pool("notify", tuning.notify_concurrency, LEASE, notifier.send),
    ]
    worker = Worker(
        store,
        pools,
        RetrySchedule(tuning.retry_delays),
        health.component("dispatch", "worker"),
        wait_for_downloads=settings.notify.wait_for_downloads,
        secrets=settings.secrets(),
    )
    task = asyncio.create_task(supervise(worker.component, worker.run), name="dispatch-worker")
    try:
        yield worker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for session in sessions:
            await session.close()
