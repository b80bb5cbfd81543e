"""What each event of a job's log did to the job: `effects(events) -> [Effect | None]`.

The log keeps every new report, even one that no longer moves the job (a `processing`
arriving after `succeeded`); the projection keeps only the outcome. Reading a timeline,
an operator needs both: this fold replays a job's events in sequence order by the state
machine's own rules (core/machine.py) and says, per report, whether it

- `changed` the job (its status, or its progress),
- was `ignored`: it came late (the job had already moved past it) or changed nothing,
- was a `conflict`: a terminal status other than the one already reported (kept, and
  listed in the job's `conflict`, but the first terminal status stands).

Events that are not status reports (`job.tracked`, the `job.conflict` marker, dispatch
records) have no effect (None). Reports the intake found to be duplicates are not events
at all; they are kept as deliveries with the verdict `duplicate`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from jobtrail.core.model import Event, Status


class Effect(NamedTuple):
    kind: str  # "changed", "ignored" or "conflict"
    note: str  # for people: "queued → processing", "late: the job was already succeeded"


def effects(events: Iterable[Event]) -> list[Effect | None]:
    """One entry per event, in the order given (a job's events in sequence order)."""
    status: Status | None = None
    progress: int | None = None
    terminals: set[Status] = set()
    found: list[Effect | None] = []
    for event in events:
        family, _, word = event.type.partition(".")
        reported = Status(word) if family == "job" and word in _STATUSES else None
        if reported is None:
            found.append(None)
            continue
        said = event.data.get("progress")
        said = said if isinstance(said, int) and not isinstance(said, bool) else None
        if reported.terminal and status is not None and status.terminal:
            terminals.add(reported)
            progress = 100 if reported is Status.SUCCEEDED else _higher(progress, said)
            found.append(Effect("conflict", f"{reported.value} disagrees with {status.value}, which stands"))
            continue
        if status is None or reported.rank > status.rank:
            moved = f"{status.value} → {reported.value}" if status else f"first seen {reported.value}"
            found.append(Effect("changed", moved))
            status = reported
            progress = 100 if reported is Status.SUCCEEDED else _higher(progress, said)
            if reported.terminal:
                terminals.add(reported)
        elif said is not None and (progress is None or said > progress):
            found.append(Effect("changed", f"progress {_percent(progress)} → {said}%"))
            progress = said
        elif reported.rank < status.rank:
            found.append(Effect("ignored", f"late: the job was already {status.value}"))
        else:
            found.append(Effect("ignored", "changed nothing"))
    return found


_STATUSES = frozenset(s.value for s in Status)


def _higher(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _percent(progress: int | None) -> str:
    return "-" if progress is None else f"{progress}%"
