"""When to poll a job next. Pure.

A job is polled every `age_factor` x its age, clamped to [min_interval, max_interval]
and jittered down by up to `jitter`: with the defaults (0.1, 5 s, 300 s) a job is polled
every 5 s for its first 50 s, every minute at 10 minutes old, and every 5 minutes from
50 minutes on. A failed poll backs off per job (`Backoff`, from `min_interval` up to
`max_interval`), and a provider that said "slow down" (429) or "not allowed" (401/403)
is paused as a whole.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from jobtrail.core.retry import Backoff


@dataclass(frozen=True, slots=True)
class PollSchedule:
    min_interval: float = 5.0
    max_interval: float = 300.0
    age_factor: float = 0.1
    jitter: float = 0.1

    def interval(self, age: float, rand: Callable[[], float] = random.random) -> float:
        """Seconds until the next poll of a job `age` seconds old."""
        base = min(self.max_interval, max(self.min_interval, age * self.age_factor))
        return base * (1 - self.jitter * rand())

    @property
    def backoff(self) -> Backoff:
        """Per-job backoff after a failed poll."""
        return Backoff(base=self.min_interval, cap=self.max_interval, server_cap=3600.0)

    @property
    def refused_pause(self) -> float:
        """How long a provider that refused our key (401/403) is left alone."""
        return self.max_interval
