"""A fresh result URL for a download whose URL expired: the provider's status document
hands out a new one (Oxen, Apiframe and Pixazo; `catalog.Provider.fresh_urls`). The
answer is recorded like any poll. The dispatcher gets `fresh_url` from the app, which
opens it with `refreshing(settings, store)`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from jobtrail.core.model import Delivery, OutboxEntry, utcnow
from jobtrail.core.settings import Settings
from jobtrail.providers import catalog
from jobtrail.providers.replies import Observed
from jobtrail.runtime import http
from jobtrail.store.base import Store

FreshUrl = Callable[[OutboxEntry], Awaitable[str | None]]
TIMEOUT = aiohttp.ClientTimeout(total=30)


class Refresher:
    def __init__(self, settings: Settings, store: Store, session: aiohttp.ClientSession) -> None:
        self.settings, self.store, self.session = settings, store, session

    async def fresh_url(self, entry: OutboxEntry) -> str | None:
        """The provider's current URL for this download's result, or None."""
        name = entry.item.provider
        known = catalog.PROVIDERS.get(name)
        provider = self.settings.provider(name)
        if known is None or not known.fresh_urls or not provider.active:
            return None
        job = await self.store.get_job(name, entry.item.job_id)
        if job is None:
            return None
        answer = await http.send(self.session, known.poll.status_call(provider, job), TIMEOUT)
        reply = known.poll.read(job, answer.status, answer.headers, answer.body, utcnow())
        if not isinstance(reply, Observed) or reply.observation.job_id != job.id:
            return None
        delivery = Delivery("poll", name, utcnow(), answer.headers, answer.body, job.id)
        await self.store.intake(delivery, [reply.observation])
        urls = reply.observation.result_urls
        index = int(entry.item.payload.get("index", 0))
        return urls[index] if index < len(urls) else None


@contextlib.asynccontextmanager
async def refreshing(settings: Settings, store: Store) -> AsyncIterator[FreshUrl]:
    session = http.new_session(2)
    try:
        yield Refresher(settings, store, session).fresh_url
    finally:
        await session.close()
