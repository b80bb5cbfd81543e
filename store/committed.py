"""The writes of a store whose log is written by a group committer (store/batching.py):
SQLite and PostgreSQL alike submit intakes and attempt records and wait for the commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobtrail.core.intake import AttemptRecord, IntakeRequest, Refused
from jobtrail.core.model import Delivery, Event, IntakeResult, Observation
from jobtrail.store.base import LeaseLost, Store
from jobtrail.store.batching import GroupCommitter


class GroupCommitted(Store):
    """`intake`, `intake_many`, `reject` and `record_attempt` through `self._committer`;
    a request's weight, for the committer's bound, is its delivery's body."""

    _committer: GroupCommitter[Any, Any, Any]

    def _observe_commit(self, seconds: float, size: int) -> None:
        """The committer's report of one batch written (for `/metrics`)."""
        if self.commit_observer is not None:
            self.commit_observer(seconds, size)

    async def intake(self, delivery: Delivery, observations: Sequence[Observation]) -> IntakeResult:
        result = await self._committer.submit(
            IntakeRequest(delivery, tuple(observations)), len(delivery.body)
        )
        assert isinstance(result, IntakeResult)
        return result

    async def intake_many(self, requests: Sequence[IntakeRequest]) -> list[IntakeResult]:
        weight = sum(len(request.delivery.body) for request in requests)
        results = await self._committer.submit_many(requests, weight)
        return [r for r in results if isinstance(r, IntakeResult)]

    async def reject(self, delivery: Delivery, reason: str) -> int:
        return (await self.intake_many([IntakeRequest(delivery, rejection=reason)]))[0].delivery_id

    async def record_attempt(self, record: AttemptRecord) -> Event | None:
        result = await self._committer.submit(record)
        if isinstance(result, Refused):
            raise LeaseLost(result)
        assert result is None or isinstance(result, Event)
        return result
