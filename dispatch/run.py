"""Starting and stopping the outbox worker of a running service.

`running(settings, store, health, fresh_url)` runs the worker with a download pool and a
notification pool, until the context is left. `fresh_url` asks the provider for a new
URL when a download's has expired (the app passes the listeners' refresher: dispatch
never imports the listeners). Leases left by a process that died are not released here
(they may be another live process's): they end by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import aiohttp
import structlog

from jobtrail.core.model import OutboxEntry
from jobtrail.core.settings import Settings
from jobtrail.dispatch import download
from jobtrail.dispatch.notify import Notifier
from jobtrail.dispatch.schedule import Outcome, RetrySchedule
from jobtrail.dispatch.worker import Pool, Worker
from jobtrail.runtime import http
from jobtrail.runtime.health import Health
from jobtrail.runtime.supervise import supervise
from jobtrail.store.base import Store, StoreError

log = structlog.get_logger(__name__)


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    store: Store,
    health: Health,
    fresh_url: Callable[[OutboxEntry], Awaitable[str | None]] | None = None,
    owner: str | None = None,
) -> AsyncIterator[Worker]:
    tuning = settings.dispatch
    sessions = [
        download.new_session(settings.download_allow_hosts, tuning.download_concurrency),
        aiohttp.ClientSession(headers={"User-Agent": "jobtrail"}),
    ]
    downloads, notifications = sessions
    downloader = download.Downloader(
        downloads,
        settings.data_dir,
        settings.download_allow_hosts,
        max_bytes=tuning.download_max_bytes,
        timeout=tuning.download_timeout,
        read_timeout=tuning.download_read_timeout,
    )
    notifier = Notifier(store, settings.notify, notifications, tuning.notify_timeout)

    async def fetch(entry: OutboxEntry) -> Outcome:
        outcome = await downloader.fetch(entry)
        if not outcome.details.get("expired"):
            return outcome
        old = entry.item.payload.get("url")
        if fresh_url is None:
            return outcome
        try:
            fresh = await fresh_url(entry)
        except (aiohttp.ClientError, TimeoutError, http.AnswerTooLarge, StoreError) as exc:
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
        Pool("download", tuning.download_concurrency, tuning.lease_seconds, fetch),
        Pool("notify", tuning.notify_concurrency, tuning.lease_seconds, notifier.send),
    ]
    worker = Worker(
        store,
        pools,
        RetrySchedule(tuning.retry_delays),
        health.component("dispatch", "worker"),
        wait_for_downloads=settings.notify.wait_for_downloads,
        secrets=settings.secrets(),
        owner=owner,
    )
    task = asyncio.create_task(supervise(worker.component, worker.run), name="dispatch-worker")
    try:
        yield worker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for session in sessions:
            await session.close()
