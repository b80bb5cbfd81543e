"""Backoff as a value, and reading a server's `Retry-After`. Pure.

`Backoff.delay(n)` is the wait before retry number `n` (0 for the first retry):

    d = min(cap, base * 2**n), drawn uniformly from [d * (1 - jitter), d]

and a delay the server asked for (`retry:` or `Retry-After`) raises that to at least the
server's value, itself capped at `server_cap` so a hostile or broken server cannot park
us for a day. With the defaults (LaunchDarkly's, see SSE.md) the waits are 0.5-1 s,
1-2 s, 2-4 s ... up to 15-30 s.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 1.0
    cap: float = 30.0
    jitter: float = 0.5
    server_cap: float = 300.0

    def delay(
        self,
        n: int,
        server: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before retry `n`; `server` is what the server asked for."""
        ceiling = min(self.cap, math.ldexp(self.base, min(max(n, 0), 62)))
        wait = ceiling * (1 - self.jitter * rand())
        if server is not None and server > 0:
            wait = max(wait, min(server, self.server_cap))
        return wait


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A `Retry-After` header (delta seconds or an HTTP date) as seconds from `now`.

    None when absent or unreadable; never negative.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        if len(text) > 12:  # past any useful wait, and int() refuses 4,300 digits
            return None
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())
