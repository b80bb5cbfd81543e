"""How much refused, unauthenticated webhook traffic is kept, per source.

A webhook that fails its token or signature is kept as a rejected delivery, for audit (a
provider still sending with a rotated-out token shows up there). Unbounded, that lets
anyone fill the disk: 100 headers of 1 KiB, 250 requests a second. So each source (an
IPv4 address, or an IPv6 /64: one host can hold a whole /64) has a budget of stored bytes,
a bucket that refills at `per_minute` bytes a minute and holds at most that; all sources
together at most `SOURCES_SHARE` times that. A refusal over budget is answered 429 with
`Retry-After` and not stored (counted in `/metrics`). Deliveries that pass authentication
never touch the budget. At most `MAX_SOURCES` sources are remembered (the one seen
longest ago is forgotten first), so the budget's own memory is bounded too.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_SOURCES = 10_000
SOURCES_SHARE = 16


class _Bucket:
    """Bytes that may be stored now: refills at `rate` a second, holds at most `size`."""

    __slots__ = ("at", "level", "rate", "size")

    def __init__(self, size: float, now: float) -> None:
        self.size, self.rate, self.level, self.at = size, size / 60.0, size, now

    def wait(self, cost: int, now: float) -> float:
        """Seconds until `cost` fits (0: it fits now), after refilling to `now`."""
        self.level = min(self.size, self.level + (now - self.at) * self.rate)
        self.at = now
        return max(0.0, (cost - self.level) / self.rate)


def source_of(remote: str | None) -> str:
    """The budget's key for a peer address: itself, or its /64 for IPv6."""
    if not remote:
        return "-"
    try:
        ip = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote[:64]
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


class RefusalBudget:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self._sources: OrderedDict[str, _Bucket] = OrderedDict()
        self._shared = _Bucket(float(per_minute * SOURCES_SHARE), clock())

    def spend(self, remote: str | None, cost: int) -> float | None:
        """Take `cost` bytes from the source's budget and the shared one: None if both had
        them, else the seconds until they will (and nothing is taken)."""
        now = self.clock()
        key = source_of(remote)
        bucket = self._sources.pop(key, None) or _Bucket(float(self.per_minute), now)
        self._sources[key] = bucket  # the most recently seen last
        if len(self._sources) > MAX_SOURCES:
            self._sources.popitem(last=False)
        wait = max(bucket.wait(cost, now), self._shared.wait(cost, now))
        if wait > 0:
            return max(1.0, wait)
        bucket.level -= cost
        self._shared.level -= cost
        return None
