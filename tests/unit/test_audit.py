"""core/audit.py: what each report did, replayed by the state machine's own rules."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from jobtrail.core.audit import effects
from jobtrail.core.intake import IntakeRequest, plan_batch
from jobtrail.core.model import Delivery, Event, Observation, utcnow


def _events(*reports: tuple[str, int | None]) -> list[Event]:
    """The events the intake logs for these reports, in this order, one delivery each."""
    at = utcnow()
    requests = [
        IntakeRequest(
            Delivery("poll", "oxen", at, {}, b"{}", "j"),
            (Observation("oxen", "j", kind, progress=progress),),  # type: ignore[arg-type]
        )
        for kind, progress in reports
    ]
    plan = plan_batch(requests, {}, lambda before, after, obs: [], at)
    return [
        Event(n, e.provider, e.job_id, e.type, e.source, at, e.data) for n, e in enumerate(plan.events, 1)
    ]


def _kinds(*reports: tuple[str, int | None]) -> list[tuple[str, str] | None]:
    return [(e.kind, e.note) if e else None for e in effects(_events(*reports))]


def test_a_late_processing_after_succeeded_is_ignored_and_says_why() -> None:
    assert [
        ("changed", "first seen queued"),
        ("changed", "queued → processing"),
        ("changed", "processing → succeeded"),
        ("ignored", "late: the job was already succeeded"),
    ] == _kinds(("queued", None), ("processing", 40), ("succeeded", None), ("processing", 80))


def test_progress_moves_within_a_status_and_lower_progress_is_ignored() -> None:
    assert [
        ("changed", "first seen processing"),
        ("changed", "progress 40% → 60%"),
        ("ignored", "changed nothing"),
        ("ignored", "late: the job was already processing"),
    ] == _kinds(("processing", 40), ("processing", 60), ("processing", 50), ("queued", None))


def test_a_second_terminal_status_is_a_conflict_and_its_marker_has_no_effect() -> None:
    events = _events(("succeeded", None), ("failed", None))
    assert ["job.succeeded", "job.failed", "job.conflict"] == [e.type for e in events]
    assert [
        ("changed", "first seen succeeded"),
        ("conflict", "failed disagrees with succeeded, which stands"),
        None,
    ] == _kinds(("succeeded", None), ("failed", None))


def test_tracking_and_dispatch_records_have_no_effect() -> None:
    at = utcnow()
    tracked = Event(1, "oxen", "j", "job.tracked", "api", at, {"params": {}})
    sent = Event(2, "oxen", "j", "notification.sent", "dispatch", at, {"progress": 3})
    assert [None, None] == effects([tracked, sent])


_REPORTS = st.lists(
    st.tuples(
        st.sampled_from(["queued", "processing", "succeeded", "failed"]),
        st.none() | st.integers(0, 100),
    ),
    min_size=1,
    max_size=8,
)


@given(_REPORTS)
def test_the_fold_agrees_with_the_projection_on_every_ordering(reports: list[tuple[str, int | None]]) -> None:
    """A report marked `changed` is exactly one after which the job (as the intake
    projected it) differs in status or progress; `ignored` ones leave it as it was; a
    `conflict` leaves the job in conflict."""
    for order in itertools.islice(itertools.permutations(reports), 24):
        at = utcnow()
        job = None
        for kind, progress in order:
            request = IntakeRequest(
                Delivery("poll", "oxen", at, {}, b"{}", "j"),
                (Observation("oxen", "j", kind, progress=progress),),  # type: ignore[arg-type]
            )
            before = job
            plan = plan_batch([request], {("oxen", "j"): job} if job else {}, lambda *_: [], at)
            job = plan.jobs.get(("oxen", "j"), job)
            events = [e for e in plan.events if e.type != "job.conflict"]
            if not events:
                continue  # a duplicate: no event, no effect
            history = _events(*[(k, p) for k, p in order[: order.index((kind, progress)) + 1]])
            effect = effects(history)[-1 if history[-1].type != "job.conflict" else -2]
            assert effect is not None
            if effect.kind == "conflict":
                assert job is not None and job.conflict
                continue
            moved = before is None or (before.status, before.progress) != (job.status, job.progress)
            assert (effect.kind == "changed") == moved, (order, kind, progress, effect)
