"""A job's history as people read it: its events with what each did (core/audit.py), and
the duplicate reports the intake kept as deliveries. Shared by the API, the CLI and the
console."""

from __future__ import annotations

from collections.abc import Sequence

from jobtrail.core.audit import Effect, effects
from jobtrail.core.model import Event, Verdict
from jobtrail.store.base import Store, StoredDelivery

PAGE = 10_000
MAX_DUPLICATES = 1_000  # the first ones kept; a job polled for days has many


async def annotated(
    store: Store, provider: str, job_id: str, *, after: int = 0, limit: int = 1000
) -> list[tuple[Event, Effect | None]]:
    """Up to `limit` of the job's events after sequence number `after`, each with its
    effect. The fold starts at the job's first event, so the events before `after` are
    read too (in pages) but not returned."""
    history: list[Event] = []
    seen = 0
    while True:
        page = await store.job_events(provider, job_id, after=seen, limit=PAGE)
        history.extend(page)
        if len(page) < PAGE or sum(1 for e in history if e.seq > after) >= limit:
            break
        seen = page[-1].seq
    pairs = zip(history, effects(history), strict=True)
    return [(event, effect) for event, effect in pairs if event.seq > after][:limit]


async def duplicates(store: Store, provider: str, job_id: str) -> Sequence[StoredDelivery]:
    """The deliveries about this job that the intake found to say nothing new (among its
    first MAX_DUPLICATES deliveries), oldest first."""
    kept = await store.deliveries(provider=provider, job_id=job_id, limit=MAX_DUPLICATES)
    return [d for d in kept if d.verdict is Verdict.DUPLICATE]


def effect_json(effect: Effect | None) -> dict[str, str] | None:
    return {"kind": effect.kind, "note": effect.note} if effect else None
