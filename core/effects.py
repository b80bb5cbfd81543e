"""Which outbox work a transition calls for. Pure: (job before, job after) -> items.

- A job that becomes `succeeded` gets one download per result URL. When the result came
  with the observation itself, already on disk (Venice), that download is recorded as done.
- A job that reaches a terminal status for the first time notifies every configured sink.
Keys are stable (provider, job, what), so enqueuing the same work twice is a no-op.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from core.model import Job, Observation, OutboxItem, Status


@dataclass(frozen=True, slots=True)
class EffectPlanner:
    """Plans outbox items; `sinks` are the configured notification sinks' names."""

    sinks: Sequence[str] = ()

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
        if after.status.terminal and not (was and was.terminal):
            for sink in self.sinks:
                items.append(
                    OutboxItem(
                        key=f"notify:{sink}:{after.provider}:{after.id}:{after.status.value}",
                        kind="notify",
                        provider=after.provider,
                        job_id=after.id,
                        sink=sink,
                        payload={"status": after.status.value},
                    )
                )
        return items
