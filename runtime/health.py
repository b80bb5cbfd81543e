"""What each listener and poller is doing right now, for `/readyz`.

Each loop owns one `Component` and updates it as it goes; `/readyz` reads a snapshot.
A component is unhealthy when it has failed (a 401/403, a 204 "stop"), or when its last
`DEGRADED_AFTER` attempts all failed (every poll a DNS error, say), until it recovers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobtrail.core.model import utcnow

DEGRADED_AFTER = 3  # attempts failed in a row (polls, stream connections) before `degraded`


class State(enum.StrEnum):
    STARTING = "starting"
    CONNECTED = "connected"
    RUNNING = "running"
    BACKING_OFF = "backing_off"
    DEGRADED = "degraded"  # its recent attempts all failed (DEGRADED_AFTER in a row)
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(slots=True)
class Component:
    name: str
    kind: str
    state: State = State.STARTING
    reason: str | None = None
    until: datetime | None = None
    since: datetime = field(default_factory=utcnow)
    last_event_at: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.state not in (State.FAILED, State.STOPPED, State.DEGRADED)

    def set(self, state: State, reason: str | None = None, until: datetime | None = None) -> None:
        if state is not self.state:
            self.since = utcnow()
        self.state, self.reason, self.until = state, reason, until

    def saw_event(self, count: int = 1, what: str = "events") -> None:
        self.last_event_at = utcnow()
        self.counts[what] = self.counts.get(what, 0) + count

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "state": self.state.value,
            "healthy": self.healthy,
            "reason": self.reason,
            "until": self.until.isoformat() if self.until else None,
            "since": self.since.isoformat(),
            "last_event_at": self.last_event_at.isoformat() if self.last_event_at else None,
            "counts": dict(self.counts),
        }


class Health:
    """The board of components; one per process."""

    def __init__(self) -> None:
        self._components: dict[str, Component] = {}

    def component(self, name: str, kind: str) -> Component:
        found = self._components.get(name)
        if found is None:
            found = self._components[name] = Component(name, kind)
        return found

    def healthy(self) -> bool:
        return all(c.healthy for c in self._components.values())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: c.to_json() for name, c in sorted(self._components.items())}
