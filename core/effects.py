"""Which outbox work a transition calls for. Pure: (job before, job after) -> items.

- A job that becomes `succeeded` gets one download per result URL. When the result came
  with the observation itself, already on disk (Venice), that download is recorded as done.
- A job whose status changes notifies the sinks whose rules name that status (by
  default every configured sink hears the terminal statuses); a notification about a
  success carries `status` so the worker can let it wait for the job's downloads.
Keys are stable (provider, job, what), so enqueuing the same work twice is a no-op.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from jobtrail.core.model import Job, Observation, OutboxItem, Status
from jobtrail.core.settings import Rule


@dataclass(frozen=True, slots=True)
class EffectPlanner:
    """Plans outbox items. `rules` say which sinks hear which status changes; given only
    `sinks`, they hear every terminal status."""

    sinks: Sequence[str] = ()
    rules: Sequence[Rule] | None = None

    def _sinks_for(self, provider: str, status: str) -> list[str]:
        if self.rules is None and not self.sinks:
            return []
        rules = self.rules if self.rules is not None else (Rule(tuple(self.sinks)),)
        found: list[str] = []
        for rule in rules:
            if rule.matches(provider, status):
                found.extend(s for s in rule.sinks if s not in found)
        return found

    def __call__(self, before: Job | None, after: Job, obs: Observation) -> list[OutboxItem]:
        items: list[OutboxItem] = []
        was = before.status if before else None
        if after.status is Status.SUCCEEDED and was is not Status.SUCCEEDED and obs.file is not None:
            items.append(
                OutboxItem(
                    key=f"download:{after.provider}:{after.id}:file",
                    kind="download",
                    provider=after.provider,
                    job_id=after.id,
                    sink="download",
                    payload={"url": obs.file.get("url"), "index": 0, **obs.file},
                    status="done",
                )
            )
        if after.status is Status.SUCCEEDED and was is not Status.SUCCEEDED:
            for index, url in enumerate(after.result_urls):
                digest = hashlib.sha256(url.encode()).hexdigest()[:16]
                items.append(
                    OutboxItem(
                        key=f"download:{after.provider}:{after.id}:{digest}",
                        kind="download",
                        provider=after.provider,
                        job_id=after.id,
                        sink="download",
                        payload={"url": url, "index": index},
                    )
                )
        if after.status is not was:
            status = after.status._value_  # not .value: an enum property, on intake's hot path
            for sink in self._sinks_for(after.provider, status):
                items.append(
                    OutboxItem(
                        key=f"notify:{sink}:{after.provider}:{after.id}:{status}",
                        kind="notify",
                        provider=after.provider,
                        job_id=after.id,
                        sink=sink,
                        payload={"status": status},
                    )
                )
        return items
