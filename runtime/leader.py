"""One leader among the replicas: the singletons (the Oxen stream, the pollers) run in
one process only, and in another soon after that one dies.

    every ttl/3 seconds: take or renew the lease (`Store.lead`)
        held, not leading: start the singletons      (a new leader: they fill the gap)
        lost, leading:     stop them

The lease lives in the store, with the store's clock (PostgreSQL: a row with an expiry;
SQLite and memory: always granted, one server per store). A leader that cannot reach the
store to renew stops its singletons once two thirds of the lease have passed since its
last renewal, before the lease can pass to another replica. On a clean stop it resigns,
so another takes over at once instead of after the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

import structlog

from jobtrail.runtime.health import Component, State
from jobtrail.runtime.supervise import supervise
from jobtrail.store.base import Store, StoreError

log = structlog.get_logger(__name__)

NAME = "listeners"
TTL = 15.0

Singletons = Callable[[], AbstractAsyncContextManager[Any]]


class Leadership:
    def __init__(
        self,
        store: Store,
        component: Component,
        owner: str,
        *,
        ttl: float = TTL,
        name: str = NAME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.component, self.owner = store, component, owner
        self.ttl, self.name, self._clock = ttl, name, clock
        self.leading = False

    @property
    def role(self) -> str:
        return "leader" if self.leading else "follower"

    async def run(self, singletons: Singletons) -> None:
        self.component.set(State.RUNNING, "follower")
        stack: AsyncExitStack | None = None
        renewed: float | None = None
        try:
            while True:
                try:
                    held = await self.store.lead(self.name, self.owner, self.ttl)
                    renewed = self._clock() if held else renewed
                except StoreError as exc:
                    log.warning("leader_lease_not_renewed", error=str(exc))
                    held = self.leading and renewed is not None and self._clock() - renewed < self.ttl * 2 / 3
                if held and stack is None:
                    stack = AsyncExitStack()
                    await stack.enter_async_context(singletons())
                    self._became(True)
                elif not held and stack is not None:
                    await stack.aclose()
                    stack = None
                    self._became(False)
                await asyncio.sleep(self.ttl / 3)
        finally:
            if stack is not None:
                await stack.aclose()
            self.leading = False
            with contextlib.suppress(StoreError):
                await self.store.resign(self.name, self.owner)

    def _became(self, leading: bool) -> None:
        self.leading = leading
        self.component.set(State.RUNNING, self.role)
        self.component.count("elected" if leading else "stepped_down")
        log.info("leader_elected" if leading else "leader_stepped_down", owner=self.owner, lease=self.name)


@contextlib.asynccontextmanager
async def leading(leadership: Leadership, singletons: Singletons) -> AsyncIterator[Leadership]:
    """Run the leadership loop while the context is open (restarted if it dies of a bug)."""
    task = asyncio.create_task(
        supervise(leadership.component, lambda: leadership.run(singletons)), name="leader"
    )
    try:
        yield leadership
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
