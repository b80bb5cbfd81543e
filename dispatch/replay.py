"""Replaying outbox work: one item, or every dead-lettered item of a sink or a time range.

A replay puts the item back to `pending` with a fresh attempt count, due now, and logs an
`<kind>.replayed` event. Replaying a sink's dead items also switches the sink back on (it
was switched off by a 410; replaying says the endpoint was fixed). A notification keeps
its webhook id, so a receiver that did get it can still deduplicate.
"""

from __future__ import annotations

from datetime import datetime

from jobtrail.core.intake import AttemptRecord
from jobtrail.core.model import Event, OutboxEntry, utcnow
from jobtrail.store.base import Store

_NOUN = {"download": "download", "notify": "notification"}


class NotReplayable(Exception):
    """The item is unknown, or it is waiting for an attempt already."""


def requeue(entry: OutboxEntry, why: str, enable_sink: bool = False) -> AttemptRecord:
    """The record that puts `entry` back in the queue. Pure."""
    noun = _NOUN.get(entry.item.kind, entry.item.kind)
    return AttemptRecord(
        entry_id=entry.id,
        provider=entry.item.provider,
        job_id=entry.item.job_id,
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
        last_error=None,
        payload=None,
        event_type=f"{noun}.replayed",
        event_data={"key": entry.item.key, "sink": entry.item.sink, "was": entry.status, "why": why},
        sink_state=(entry.item.sink, None) if enable_sink else None,
    )


async def replay_one(store: Store, entry_id: int) -> Event | None:
    entry = await store.outbox_entry(entry_id)
    if entry is None:
        raise NotReplayable(f"no outbox item {entry_id}")
    if entry.status == "pending":
        raise NotReplayable(f"outbox item {entry_id} is pending already")
    enable = entry.item.sink in await store.disabled_sinks()
    return await store.record_attempt(requeue(entry, "replayed by hand", enable_sink=enable))


async def replay_dead(
    store: Store, *, sink: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> int:
    """Replay every dead item matching the filters, each once; returns how many.

    Pages by id: an item replayed here may be dead again before the last page is read
    (the worker runs meanwhile), and must not be replayed a second time."""
    disabled = await store.disabled_sinks()
    count = last = 0
    enabled: set[str] = set()
    while batch := await store.outbox(
        status="dead", sink=sink, since=since, until=until, limit=500, after=last
    ):
        last = batch[-1].id
        for entry in batch:
            enable = entry.item.sink in disabled and entry.item.sink not in enabled
            await store.record_attempt(requeue(entry, "dead letters replayed", enable_sink=enable))
            enabled.add(entry.item.sink)
            count += 1
    return count
