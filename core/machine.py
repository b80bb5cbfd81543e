"""The order-proof state machine: `apply(job, observation, at) -> Step`.

Rules, each a property the tests check over every ordering of a job's deliveries:

- An observation is identified by its fingerprint: the status, plus the progress for
  `processing`. A fingerprint already in the job's `seen` set is a duplicate: no event,
  no change. Result URLs, error wording and provider timestamps are not part of it, so a
  poll that re-reads a finished job (even with a freshly presigned URL) is a duplicate.
- Every new fingerprint is logged as one event, even when it no longer moves the job
  (a late `processing` after `succeeded`): the log is the audit trail of what was said.
- Status only moves up in rank (queued < processing < terminal); progress is the maximum
  ever reported (100 once succeeded); the first terminal status is sticky.
- A terminal report that differs from an earlier one appends one `job.conflict` event per
  distinct pair of terminal statuses and is listed in `terminals`; the status is not
  silently replaced.

Because events are keyed by fingerprint and the fold uses max/union, the set of events and
the job's state (for histories with one outcome) do not depend on arrival order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from jobtrail.core.model import Job, NewEvent, Observation, Status, isoformat


class Step(NamedTuple):
    """The outcome of applying one observation (a NamedTuple: cheap on the hot path)."""

    job: Job
    events: tuple[NewEvent, ...]
    duplicate: bool


def fingerprint(obs: Observation) -> str:
    if obs.kind == Status.PROCESSING:
        return f"processing:{'' if obs.progress is None else obs.progress}"
    return obs.kind


def _event_data(obs: Observation) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if obs.progress is not None:
        data["progress"] = obs.progress
    if obs.result_urls:
        data["result_urls"] = list(obs.result_urls)
    if obs.error is not None:
        data["error"] = obs.error
    if obs.provider_status is not None:
        data["provider_status"] = obs.provider_status
    if obs.provider_at is not None:
        data["provider_at"] = isoformat(obs.provider_at)
    if obs.params:
        data["params"] = dict(obs.params)
    if obs.file is not None:
        data["file"] = dict(obs.file)
    return data


def apply(job: Job | None, obs: Observation, at: datetime) -> Step:
    """Fold one observation into a job (None: not seen before)."""
    if job is None:
        return _first(obs, at)
    fp = fingerprint(obs)
    if fp in job.seen:
        return Step(job, (), duplicate=True)
    return _step(job, obs, fp, at)


def _first(obs: Observation, at: datetime) -> Step:
    """A job's first observation: folded into a blank job, built once.

    A first `queued` or `processing` (how nearly every job starts) is built directly:
    `_step` on a blank job, without its change set (tests/unit/test_machine.py holds the
    two to the same result); anything else goes through `_step`.
    """
    fp = fingerprint(obs)
    status = obs.status
    if status is None or status.terminal:
        return _step(_BLANK, obs, fp, at, identity=(obs.provider, obs.job_id, at))
    blank = _BLANK
    moved = status.rank > blank.status.rank  # a first `queued` leaves the blank job's status
    job = Job(  # by position, in Job's field order
        obs.provider,
        obs.job_id,
        at,
        at,
        status,
        obs.progress,
        blank.result_urls,
        blank.error,
        obs.provider_status if moved else blank.provider_status,
        blank.terminals,
        blank.params,
        frozenset((fp,)),
    )
    return Step(job, (NewEvent(obs.provider, obs.job_id, f"job.{obs.kind}", _event_data(obs), fp),), False)


_BLANK = Job(provider="", id="", created_at=datetime.min, updated_at=datetime.min)


def _step(
    job: Job, obs: Observation, fp: str, at: datetime, identity: tuple[str, str, datetime] | None = None
) -> Step:
    events = [NewEvent(obs.provider, obs.job_id, f"job.{obs.kind}", _event_data(obs), fp)]
    status = obs.status
    changes: dict[str, Any]
    if status is None:
        changes = {"params": {**obs.params, **job.params}}
    elif status.terminal:
        changes, conflicts = _terminal(job, obs, status)
        events.extend(conflicts)
    else:
        changes = _progress(job, obs, status)
    if len(events) == 1:  # the usual case, without building a list
        changes["seen"] = job.seen.union((fp,))
    else:
        changes["seen"] = job.seen.union([e.fingerprint for e in events if e.fingerprint])
    changes["updated_at"] = at
    return Step(_evolve(job, changes, identity), tuple(events), False)  # not duplicate


def _evolve(job: Job, changes: dict[str, Any], identity: tuple[str, str, datetime] | None) -> Job:
    """`dataclasses.replace(job, **changes)` without its introspection: this is intake's
    hot path (measured in bench/sse). `identity` (provider, id, created_at) names a new job."""
    get = changes.get
    provider, job_id, created_at = identity or (job.provider, job.id, job.created_at)
    return Job(  # by position, in Job's field order: cheaper than keywords
        provider,
        job_id,
        created_at,
        get("updated_at", job.updated_at),
        get("status", job.status),
        get("progress", job.progress),
        get("result_urls", job.result_urls),
        get("error", job.error),
        get("provider_status", job.provider_status),
        get("terminals", job.terminals),
        get("params", job.params),
        get("seen", job.seen),
    )


def _max_progress(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _progress(job: Job, obs: Observation, status: Status) -> dict[str, Any]:
    progress = _max_progress(job.progress, obs.progress)
    if status.rank > job.status.rank:
        return {"status": status, "progress": progress, "provider_status": obs.provider_status}
    return {"progress": progress}


def _terminal(job: Job, obs: Observation, status: Status) -> tuple[dict[str, Any], list[NewEvent]]:
    progress = _max_progress(job.progress, 100 if status is Status.SUCCEEDED else obs.progress)
    conflicts = [_conflict(job, earlier, status) for earlier in job.terminals if earlier is not status]
    terminals = tuple(sorted({*job.terminals, status})) if job.terminals else (status,)
    if job.status.terminal:
        return {"progress": progress, "terminals": terminals}, conflicts
    return {
        "status": status,
        "progress": progress,
        "terminals": terminals,
        "provider_status": obs.provider_status,
        "result_urls": obs.result_urls if status is Status.SUCCEEDED else job.result_urls,
        "error": obs.error if status is not Status.SUCCEEDED else None,
    }, conflicts


def _conflict(job: Job, earlier: Status, status: Status) -> NewEvent:
    pair = sorted((earlier.value, status.value))
    return NewEvent(job.provider, job.id, "job.conflict", {"statuses": pair}, "conflict:" + ":".join(pair))
