"""When to try outbox work again, and what one attempt's outcome records. Pure.

`RetrySchedule.after(n)` is the wait after the n-th failed attempt. The default follows
Svix: the first attempt is immediate, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h;
after the eighth failure the item is dead-lettered. Each wait is jittered by up to
±`jitter`, and a `Retry-After` longer than the wait wins (capped at a day).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jobtrail.core.intake import AttemptRecord
from jobtrail.core.model import OutboxEntry

SVIX = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MAX_ERROR = 1000


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    delays: tuple[float, ...] = SVIX
    jitter: float = 0.1
    max_retry_after: float = 86400.0

    def after(
        self, failures: int, retry_after: float | None = None, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait after `failures` failed attempts (1 = the first); None: give up."""
        if failures < 1:
            return 0.0
        if failures > len(self.delays):
            return None
        wait = self.delays[failures - 1] * (1 + self.jitter * (2 * rand() - 1))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt did. `permanent`: retrying cannot help (dead now). `disable_sink`:
    the endpoint said 410 Gone. `payload`: the item's new payload (a download's file, a
    refreshed URL). `retry_now`: try again at once (a refreshed URL)."""

    ok: bool
    http_status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    permanent: bool = False
    disable_sink: bool = False
    retry_now: bool = False
    payload: Mapping[str, Any] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


_WORDS = {"download": ("download", "completed"), "notify": ("notification", "delivered")}


def decide(
    entry: OutboxEntry,
    outcome: Outcome,
    schedule: RetrySchedule,
    now: datetime,
    duration: float,
    rand: Callable[[], float] = random.random,
) -> AttemptRecord:
    """The record of one attempt: the item's next state and the event that logs it."""
    attempt = entry.attempts + 1
    noun, success = _WORDS.get(entry.item.kind, (entry.item.kind, "done"))
    wait = schedule.after(attempt, outcome.retry_after, rand)
    if outcome.retry_now and wait is not None:
        wait = 0.0
    if outcome.ok:
        status, word = "done", success
    elif outcome.permanent or outcome.disable_sink or wait is None:
        status, word = "dead", "dead"
    else:
        status, word = "pending", "failed"
    next_at = now + timedelta(seconds=wait or 0.0) if status == "pending" else now
    error = None if outcome.ok else (outcome.error or "failed")[:MAX_ERROR]
    data: dict[str, Any] = {
        "key": entry.item.key,
        "kind": entry.item.kind,
        "sink": entry.item.sink,
        "attempt": attempt,
        "http_status": outcome.http_status,
        "duration_ms": round(duration * 1000, 1),
        "error": error,
        **outcome.details,
    }
    if status == "pending":
        data["next_attempt_at"] = next_at.isoformat()
    sink_state = None
    if outcome.disable_sink:
        reason = f"disabled after HTTP 410 Gone: {error}"
        data["sink_disabled"] = reason
        sink_state = (entry.item.sink, reason)
    return AttemptRecord(
        entry_id=entry.id,
        provider=entry.item.provider,
        job_id=entry.item.job_id,
        status=status,
        attempts=attempt,
        next_attempt_at=next_at,
        last_error=error,
        payload=outcome.payload,
        event_type=f"{noun}.{word}",
        event_data=data,
        sink_state=sink_state,
    )
