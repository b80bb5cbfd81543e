"""What retention does to old deliveries, old notifications and old jobs, decided over
one page. Pure.

The log keeps every delivery: the raw request (headers, body) behind each report, and
the duplicates and refusals around them. Past its window a delivery is deleted: a
rejected one past `rejected_before`, any other past `raw_before`. The audit trail is the
job's events, which stay: each keeps what it said, its source, its time and the number of
the delivery that brought it (a number that then names no delivery). Keeping an accepted
delivery's row without its headers and body, as jobtrail did before, cost about 1.3 KB a
job for ever (bench/scale: ten rows and their index entries) to tell what the events
already do.

A backend reads a page of deliveries in id order after a position, asks `decide`, and
applies the deletes in one short transaction. Ids rise with arrival, so the
pruner (runtime/retention.py) can remember where the rows older than both windows end
and start there next time; rows between the two windows are looked at again each time
(doing nothing to them twice is harmless).

Whole jobs go only when a separate setting asks for it (`choose_jobs`): a finished job
last changed before the cut goes with its events, its deliveries (each names one job:
no other job's event refers to them), and its outbox items, and a tombstone keeps its
key, so that a late report about it is refused (core.intake.REMOVED) instead of starting the job
again, and its notifications with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from jobtrail.core.model import Verdict

# A delivery as retention reads it: (id, verdict, received_at).
Row = tuple[int, str, datetime]


class Pruned(NamedTuple):
    """One page's work.

    `last`: the last id looked at (the next page starts after it); `done_until`: the
    last id of the page's leading rows that are past both windows (None: the first row
    was not); `all_done`: every row of the page was; `finished`: the page reached a row
    inside both windows, or the end of the log: nothing further is due now."""

    deleted: int
    last: int
    done_until: int | None
    all_done: bool
    finished: bool


class Decision(NamedTuple):
    delete: list[int]
    last: int
    done_until: int | None
    all_done: bool
    finished: bool

    def pruned(self) -> Pruned:
        """What applying it did."""
        return Pruned(len(self.delete), self.last, self.done_until, self.all_done, self.finished)


def decide(
    rows: Iterable[Row], after: int, raw_before: datetime, rejected_before: datetime, page: int
) -> Decision:
    """`rows`: at most `page` deliveries in id order after `after`. A window that keeps
    forever has a bound before any delivery."""
    delete: list[int] = []
    oldest, newest = min(raw_before, rejected_before), max(raw_before, rejected_before)
    done_until: int | None = None
    leading, last, seen = True, after, 0
    for delivery_id, verdict, received_at in rows:
        seen += 1
        if received_at >= newest:
            return Decision(delete, last, done_until, False, True)
        last = delivery_id
        if received_at >= oldest:
            leading = False
        elif leading:
            done_until = delivery_id
        if received_at < (rejected_before if verdict == Verdict.REJECTED.value else raw_before):
            delete.append(delivery_id)
    return Decision(delete, last, done_until, leading, seen < page)


# Whole jobs (`RetentionSettings.jobs_days`): a job as that walk reads it, (jid, provider,
# job_id, status, created_at, updated_at, outbox work still pending).
JobRow = tuple[int, str, str, str, datetime, datetime, bool]
TERMINAL = frozenset(("succeeded", "failed", "cancelled"))


class Removal(NamedTuple):
    """One page of the jobs walk: `remove`, the (jid, provider, job_id) of the jobs to go;
    `last`: the last jid looked at; `finished`: nothing further is due now."""

    remove: list[tuple[int, str, str]]
    last: int
    finished: bool


def choose_jobs(rows: Iterable[JobRow], after: int, before: datetime, page: int) -> Removal:
    """`rows`: at most `page` jobs in jid order after `after`. A job goes when it is
    finished (succeeded, failed, cancelled), last changed before `before`, and has no
    outbox work pending (a download or notification still due keeps it). Jids rise with
    creation: a job created at or after `before` ends the walk."""
    remove: list[tuple[int, str, str]] = []
    last, seen = after, 0
    for jid, provider, job_id, status, created_at, updated_at, busy in rows:
        seen += 1
        if created_at >= before:
            return Removal(remove, last, True)
        last = jid
        if status in TERMINAL and updated_at < before and not busy:
            remove.append((jid, provider, job_id))
    return Removal(remove, last, seen < page)


# Notifications (`RetentionSettings.notifications_days`): an outbox item as that walk
# reads it, (id, kind, status, created_at, updated_at).
OutboxRow = tuple[int, str, str, datetime, datetime]


class Sweep(NamedTuple):
    """One page of the outbox walk: `delete`, the ids of the items to go; `last`: the
    last id looked at; `settled`: the last id of the page's leading items that need no
    further look (downloads, notifications deleted now or dead), None if the first
    does; `finished`: nothing further is due now."""

    delete: list[int]
    last: int
    settled: int | None
    finished: bool


def choose_notifications(rows: Iterable[OutboxRow], after: int, before: datetime, page: int) -> Sweep:
    """`rows`: at most `page` outbox items in id order after `after`. A notification goes
    when it is done and was last changed before `before`: each of its attempts is in the
    log as a dispatch event, and its key, which kept it from being planned twice, is not
    needed any more (a job enters each status once: the notifications a status plans are
    never planned again). Downloads stay, done or not: they are the job's record of its
    result file (the API's `downloads`: path, bytes, sha256). Pending notifications (work
    to do) and dead ones (kept for a replay by hand) stay. Ids rise with creation: an
    item created at or after `before` ends the walk. A dead notification replayed by hand
    and done later, behind where a walk has settled, waits for the walk from the first
    item after a restart."""
    delete: list[int] = []
    last, seen, settled, leading = after, 0, None, True
    for item_id, kind, status, created_at, updated_at in rows:
        seen += 1
        if created_at >= before:
            return Sweep(delete, last, settled, True)
        last = item_id
        if kind == "notify" and status == "done" and updated_at < before:
            delete.append(item_id)
        elif kind == "notify" and status != "dead":
            leading = False  # pending, or done since the cut: due later
        if leading:
            settled = item_id
    return Sweep(delete, last, settled, seen < page)
