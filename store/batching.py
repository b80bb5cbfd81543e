"""Group commit: many concurrent intakes share one transaction, none answered before it.

Callers `submit` a request and await its result. One writer task takes everything
pending, commits it as one batch, then resolves every caller. While a batch commits, the
next one gathers, so throughput grows with concurrency and latency stays one commit or two.
If a batch fails, its requests are retried one by one so a single bad request cannot fail
its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

Req = TypeVar("Req")
Res = TypeVar("Res")

log = structlog.get_logger(__name__)


class GroupCommitter(Generic[Req, Res]):
    def __init__(
        self,
        commit: Callable[[Sequence[Req]], Awaitable[Sequence[Res]]],
        max_batch: int = 256,
    ) -> None:
        self._commit = commit
        self._max_batch = max_batch
        self._pending: list[tuple[Req, asyncio.Future[Res]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="store-group-commit")

    async def submit(self, request: Req) -> Res:
        if self._closing or self._task is None:
            raise RuntimeError("the store is not open")
        future: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        self._wake.set()
        return await future

    async def submit_many(self, requests: Sequence[Req]) -> list[Res]:
        """Submit in order; results in the same order. The first failure is raised once
        every request is settled."""
        if self._closing or self._task is None:
            raise RuntimeError("the store is not open")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Res]] = [loop.create_future() for _ in requests]
        self._pending.extend(zip(requests, futures, strict=True))
        self._wake.set()
        return list(await asyncio.gather(*futures))

    async def close(self) -> None:
        """Commit what is pending, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._commit_batch(batch)
            if self._closing:
                return

    async def _commit_batch(self, batch: list[tuple[Req, asyncio.Future[Res]]]) -> None:
        try:
            results = await self._commit([request for request, _ in batch])
        except Exception:
            if len(batch) == 1:
                _, future = batch[0]
                log.exception("intake_commit_failed")
                if not future.done():
                    future.set_exception(RuntimeError("the store could not commit"))
                return
            for one in batch:
                await self._commit_batch([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
