"""runtime/leader.Leadership with a scripted lease: singletons start when the lease is
taken, stop when it is lost or cannot be renewed for two thirds of it, and the lease is
given up on a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from jobtrail.runtime.health import Component
from jobtrail.runtime.leader import Leadership
from jobtrail.store.base import StoreUnavailable

TTL = 0.3


class Lease:
    """A store's lease as a script: `answer` is what `lead` says next (an exception is raised)."""

    def __init__(self) -> None:
        self.answer: bool | Exception = True
        self.calls = 0
        self.resigned: list[str] = []

    async def lead(self, name: str, owner: str, ttl: float) -> bool:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def resign(self, name: str, owner: str) -> None:
        self.resigned.append(owner)


class Singletons:
    def __init__(self) -> None:
        self.running = False
        self.starts = 0

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        self.running, self.starts = True, self.starts + 1
        try:
            yield
        finally:
            self.running = False


async def until(check: Any, seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):  # a guard against a hang, not a speed check
        while not check():  # noqa: ASYNC110 - waiting on another task's state, by polling it
            await asyncio.sleep(0.01)


async def test_the_holder_runs_the_singletons_and_stops_them_when_the_lease_is_lost() -> None:
    lease, singletons = Lease(), Singletons()
    leadership = Leadership(lease, Component("leader", "leadership"), "me", ttl=TTL)  # type: ignore[arg-type]
    task = asyncio.create_task(leadership.run(singletons))
    try:
        await until(lambda: singletons.running)
        assert "leader" == leadership.role
        lease.answer = False  # another replica holds it now
        await until(lambda: not singletons.running)
        assert "follower" == leadership.role
        lease.answer = True
        await until(lambda: singletons.running)
        assert 2 == singletons.starts
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not singletons.running and ["me"] == lease.resigned


async def test_a_follower_never_starts_them() -> None:
    lease, singletons = Lease(), Singletons()
    lease.answer = False
    leadership = Leadership(lease, Component("leader", "leadership"), "me", ttl=TTL)  # type: ignore[arg-type]
    task = asyncio.create_task(leadership.run(singletons))
    try:
        await until(lambda: lease.calls >= 4)
        assert (0, "follower") == (singletons.starts, leadership.role)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_leader_cut_off_from_the_store_steps_down_before_its_lease_can_pass_on() -> None:
    """It keeps leading through a short outage, but never past two thirds of the lease
    since its last renewal: by then another replica may take the lease."""
    lease, singletons = Lease(), Singletons()
    now = [0.0]
    leadership = Leadership(
        lease,  # type: ignore[arg-type]
        Component("leader", "leadership"),
        "me",
        ttl=TTL,
        clock=lambda: now[0],
    )
    task = asyncio.create_task(leadership.run(singletons))
    try:
        await until(lambda: singletons.running)
        lease.answer = StoreUnavailable("cannot reach PostgreSQL")
        calls = lease.calls
        now[0] += TTL * 0.5  # within the margin: still leading
        await until(lambda: lease.calls >= calls + 2)
        assert singletons.running
        now[0] += TTL * 0.25  # past two thirds of the lease since the last renewal
        await until(lambda: not singletons.running)
        assert "follower" == leadership.role
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
