"""Keeping a long-running loop alive: restarted after a pause if it dies of a bug."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog

from jobtrail.core.model import utcnow
from jobtrail.runtime.health import Component, State

log = structlog.get_logger(__name__)

RESTART_PAUSE = 5.0


async def supervise(component: Component, run: Callable[[], Awaitable[None]]) -> None:
    """Run a loop; if it dies of a bug, report it and start it again after a pause."""
    while True:
        try:
            await run()
            return
        except Exception as exc:
            log.exception("listener_crashed", component=component.name)
            until = utcnow() + timedelta(seconds=RESTART_PAUSE)
            component.set(State.FAILED, f"crashed: {type(exc).__name__}: {exc}", until)
            await asyncio.sleep(RESTART_PAUSE)
