"""Planning one write transaction for a batch of requests, and settling its results. Pure.

A store backend loads the jobs a batch touches, calls `plan_batch`, writes every row of
the resulting `Plan` in one transaction, and only then answers the callers with
`settle(plan, ...)`. The plan holds positions, not ids: the backend numbers the
deliveries and events as it writes them (one writer process, a database sequence, a
lock: the backend's business), so several writers can share one log. A backend also
decides, inside the transaction, whether each attempt record still holds its item's
lease; a refused record writes nothing, and its event gets no number.

Two kinds of request share the log: an `IntakeRequest` (a delivery and what it says about
jobs) and an `AttemptRecord` (the outcome of one outbox attempt: the item's new state and
the `dispatch` event that logs it). Both go through one writer, so the log has one order.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from jobtrail.core.machine import apply
from jobtrail.core.model import (
    Delivery,
    Event,
    IntakeResult,
    Job,
    Observation,
    OutboxItem,
    Verdict,
)

JobKey = tuple[str, str]
# Why a report about a job that retention removed is refused (store/retention.py): it is
# kept as a rejected delivery, and the job is not started again.
REMOVED = "job removed by retention"
Planner = Callable[[Job | None, Job, Observation], list[OutboxItem]]


# The per-delivery planning values below are NamedTuples, not frozen dataclasses: just as
# immutable, and about 3x cheaper to build (a frozen dataclass sets each field through
# object.__setattr__). Intake builds several per delivery; see bench/sse.


class IntakeRequest(NamedTuple):
    """One delivery and what it says. `rejection` set: keep it for audit, apply nothing."""

    delivery: Delivery
    observations: tuple[Observation, ...] = ()
    rejection: str | None = None

    def job_keys(self) -> Iterable[JobKey]:
        return ((o.provider, o.job_id) for o in self.observations)


class AttemptRecord(NamedTuple):
    """What one outbox attempt (or a replay) changes, and the event that says so.

    `status` is the item's new state: `pending` (try again at `next_attempt_at`), `done`
    or `dead`. `payload` replaces the item's payload when set (a download's path and
    sha256, a refreshed URL). `event_type` None records no event (a deferral).
    `sink_state` = (sink, reason) disables a sink; (sink, None) enables it again.
    `owner`: the lease holder recording an attempt; the record is refused unless the item
    is still leased to it. None: a replay, refused unless the item is not pending; or, with
    `retry_pending`, a retry by hand of a pending item, refused unless it is pending and no
    live lease holds it (a worker attempting it now).
    """

    entry_id: int
    provider: str
    job_id: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    payload: Mapping[str, Any] | None
    event_type: str | None
    event_data: Mapping[str, Any]
    sink_state: tuple[str, str | None] | None = None
    owner: str | None = None
    retry_pending: bool = False

    def job_keys(self) -> Iterable[JobKey]:
        return ()


WriteRequest = IntakeRequest | AttemptRecord


class Refused(NamedTuple):
    """The result of an attempt record that no longer held its item (nothing written)."""

    entry_id: int
    owner: str | None


class PlannedDelivery(NamedTuple):
    delivery: Delivery
    verdict: Verdict
    reason: str | None


class PlannedEvent(NamedTuple):
    """An event to append. `delivery`: the position of its delivery in the plan, if any;
    `attempt`: the position of the attempt record it logs, if any."""

    provider: str
    job_id: str
    type: str
    source: str
    data: Mapping[str, Any]
    delivery: int | None
    fingerprint: str | None
    attempt: int | None


# What to answer each request, by position in the plan. Plain tuples, not NamedTuples:
# one per delivery, and a NamedTuple costs ten times a tuple to build (290 against 27 ns).
# An intake: (delivery, verdict, first event, end of its events, job after).
_Intake = tuple[int, Verdict, int, int, Job | None]
# An attempt record: (attempt, its event or None); two items, so never taken for an intake.
_Attempt = tuple[int, int | None]


@dataclass(slots=True)
class Plan:
    """Every row one transaction writes, and what each request is answered."""

    at: datetime
    deliveries: list[PlannedDelivery] = field(default_factory=list)
    events: list[PlannedEvent] = field(default_factory=list)
    jobs: dict[JobKey, Job] = field(default_factory=dict)
    outbox: list[OutboxItem] = field(default_factory=list)
    attempts: list[AttemptRecord] = field(default_factory=list)
    answers: list[_Intake | _Attempt] = field(default_factory=list)


Result = IntakeResult | Event | Refused | None


def plan_batch(
    requests: Sequence[WriteRequest],
    jobs: Mapping[JobKey, Job],
    planner: Planner,
    at: datetime,
    removed: Collection[JobKey] = (),
) -> Plan:
    """Apply each request in order over `jobs`; return the rows to write. A report about
    a job in `removed` (its tombstone) changes nothing and is refused (`REMOVED`)."""
    plan = Plan(at)
    events, deliveries = plan.events, plan.deliveries
    current: dict[JobKey, Job] = dict(jobs)
    for request in requests:
        if isinstance(request, AttemptRecord):
            attempt = len(plan.attempts)
            plan.attempts.append(request)
            if request.event_type is None:
                plan.answers.append((attempt, None))
                continue
            plan.answers.append((attempt, len(events)))
            events.append(
                PlannedEvent(
                    request.provider,
                    request.job_id,
                    request.event_type,
                    "dispatch",
                    request.event_data,
                    None,
                    None,
                    attempt,
                )
            )
            continue
        delivery = len(deliveries)
        first = len(events)
        source = request.delivery.source
        last_job: Job | None = None
        rejection = request.rejection
        for obs in () if rejection else request.observations:
            key = (obs.provider, obs.job_id)
            if removed and key in removed:
                rejection = REMOVED
                continue
            before = current.get(key)
            step = apply(before, obs, at)
            last_job = step.job
            if step.duplicate:
                continue
            for new in step.events:
                # by position, in PlannedEvent's field order: cheaper than keywords
                events.append(
                    PlannedEvent(
                        new.provider, new.job_id, new.type, source, new.data, delivery, new.fingerprint, None
                    )
                )
            after = step.job
            plan.outbox.extend(planner(before, after, obs))
            current[key] = after
            plan.jobs[key] = after
        appended = len(events) > first
        verdict = _verdict(request, appended, rejection)
        deliveries.append(PlannedDelivery(request.delivery, verdict, None if appended else rejection))
        plan.answers.append((delivery, verdict, first, len(events), last_job))
    return plan


def _verdict(request: IntakeRequest, appended: bool, rejection: str | None) -> Verdict:
    if rejection and not appended:
        return Verdict.REJECTED
    if appended or not request.observations:
        return Verdict.ACCEPTED
    return Verdict.DUPLICATE


def numbered(plan: Plan, first_seq: int, refused: Collection[int] = ()) -> list[int | None]:
    """The sequence number of each planned event, in order from `first_seq`; None for the
    event of a refused attempt (`refused`: positions in `plan.attempts`), which is not
    written and leaves no gap. Every backend numbers events this way."""
    seqs: list[int | None] = []
    seq = first_seq
    for event in plan.events:
        if refused and event.attempt is not None and event.attempt in refused:
            seqs.append(None)
        else:
            seqs.append(seq)
            seq += 1
    return seqs


def settle(
    plan: Plan, delivery_ids: Sequence[int], first_seq: int, refused: Collection[int] = ()
) -> list[Result]:
    """Each request's answer once the plan is committed with `delivery_ids` for its
    deliveries, in order (a range where they are numbered in a row), and its events
    numbered from `first_seq` (see `numbered`)."""
    at, planned = plan.at, plan.events
    seqs = numbered(plan, first_seq, refused) if refused else None
    results: list[Result] = []
    for answer in plan.answers:
        if len(answer) == 5:
            delivery, verdict, first, end, job = answer  # an _Intake
            delivery_id = delivery_ids[delivery]
            built = []
            for index in range(first, end):
                e = planned[index]
                seq = first_seq + index if seqs is None else seqs[index]
                assert seq is not None  # only an attempt's event goes unnumbered
                # by position, in Event's field order: cheaper than keywords
                built.append(Event(seq, e.provider, e.job_id, e.type, e.source, at, e.data, delivery_id))
            results.append(IntakeResult(delivery_id, verdict, tuple(built), job))
            continue
        attempt, event = answer  # an _Attempt
        if refused and attempt in refused:
            record = plan.attempts[attempt]
            results.append(Refused(record.entry_id, record.owner))
        elif event is None:
            results.append(None)
        else:
            e = planned[event]
            seq = first_seq + event if seqs is None else seqs[event]
            assert seq is not None  # its attempt was not refused
            results.append(Event(seq, e.provider, e.job_id, e.type, e.source, at, e.data, None))
    return results
