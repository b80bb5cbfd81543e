"""The state machine: forward-only, max progress, sticky terminals, recorded conflicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from jobtrail.core.machine import Step, apply
from jobtrail.core.model import Job, Observation, Status

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def obs(kind: str, progress: int | None = None, **kw: object) -> Observation:
    return Observation("apiframe", "job-1", kind, progress=progress, **kw)  # type: ignore[arg-type]


def run(*observations: Observation) -> tuple[Job, list[Step]]:
    job: Job | None = None
    steps = []
    for i, o in enumerate(observations):
        step = apply(job, o, T0 + timedelta(seconds=i))
        steps.append(step)
        job = step.job
    assert job is not None
    return job, steps


def test_first_observation_creates_the_job_at_that_status() -> None:
    job, [step] = run(obs("processing", 10))
    assert (Status.PROCESSING, 10) == (job.status, job.progress)
    assert ["job.processing"] == [e.type for e in step.events]


def test_a_repeated_observation_is_a_duplicate_with_no_event() -> None:
    job, steps = run(obs("processing", 10), obs("processing", 10))
    assert steps[1].duplicate
    assert () == steps[1].events
    assert steps[0].job.seen == job.seen


def test_status_never_moves_backwards_but_late_reports_are_logged() -> None:
    job, steps = run(obs("processing", 50), obs("queued"))
    assert Status.PROCESSING == job.status
    assert ["job.queued"] == [e.type for e in steps[1].events]


def test_progress_never_decreases() -> None:
    job, _ = run(obs("processing", 60), obs("processing", 20), obs("processing", None))
    assert 60 == job.progress


def test_success_sets_progress_to_100_and_keeps_result_urls() -> None:
    job, _ = run(obs("processing", 10), obs("succeeded", result_urls=("https://cdn/a.mp4",)))
    assert (Status.SUCCEEDED, 100, ("https://cdn/a.mp4",)) == (job.status, job.progress, job.result_urls)


def test_terminal_status_is_sticky_against_late_progress() -> None:
    job, steps = run(obs("failed", error="boom"), obs("processing", 99))
    assert Status.FAILED == job.status
    assert "boom" == job.error
    assert not steps[1].duplicate


def test_a_fresh_presigned_url_for_the_same_success_is_a_duplicate() -> None:
    _, steps = run(
        obs("succeeded", result_urls=("https://cdn/a.mp4?sig=1",)),
        obs("succeeded", result_urls=("https://cdn/a.mp4?sig=2",)),
    )
    assert steps[1].duplicate


def test_conflicting_terminal_reports_are_recorded_never_silently_chosen() -> None:
    job, steps = run(obs("succeeded", result_urls=("https://cdn/a",)), obs("failed", error="no"))
    assert Status.SUCCEEDED == job.status
    assert job.conflict
    assert (Status.FAILED, Status.SUCCEEDED) == job.terminals
    assert ["job.failed", "job.conflict"] == [e.type for e in steps[1].events]
    assert {"statuses": ["failed", "succeeded"]} == steps[1].events[1].data


def test_tracking_keeps_params_and_is_idempotent() -> None:
    job, steps = run(obs("tracked", params={"model": "m1"}), obs("tracked", params={"model": "m2"}))
    assert {"model": "m1"} == dict(job.params)
    assert steps[1].duplicate
    assert Status.QUEUED == job.status


# -- properties ------------------------------------------------------------------------

OUTCOMES = st.sampled_from(
    [
        obs("succeeded", result_urls=("https://cdn/out.mp4",), provider_status="COMPLETED"),
        obs("failed", error="inference failed", provider_status="FAILED"),
        obs("cancelled", provider_status="CANCELLED"),
    ]
)
PROGRESS = st.lists(
    st.one_of(
        st.just(obs("queued")),
        st.just(obs("tracked", params={"model": "m"})),
        st.builds(lambda p: obs("processing", p), st.one_of(st.none(), st.integers(0, 100))),
    ),
    max_size=8,
)


def fold(deliveries: list[Observation]) -> tuple[Job, set[tuple[str, str]]]:
    job: Job | None = None
    events: set[tuple[str, str]] = set()
    for o in deliveries:
        step = apply(job, o, T0)
        job = step.job
        events |= {(e.type, repr(sorted(e.data.items()))) for e in step.events}
    assert job is not None
    return job, events


def state(job: Job) -> tuple[object, ...]:
    return (
        job.status,
        job.progress,
        job.result_urls,
        job.error,
        job.provider_status,
        job.terminals,
        dict(job.params),
        job.seen,
    )


@settings(max_examples=300, deadline=None)
@given(history=PROGRESS, outcome=st.one_of(st.none(), OUTCOMES), data=st.data())
def test_every_permutation_and_duplication_ends_in_the_same_state_and_events(
    history: list[Observation], outcome: Observation | None, data: st.DataObject
) -> None:
    """One job's deliveries, shuffled and redelivered, fold to one state and one event set."""
    deliveries = history + ([outcome] if outcome else [])
    if not deliveries:
        return
    expected_job, expected_events = fold(deliveries)
    redelivered = deliveries + data.draw(st.lists(st.sampled_from(deliveries), max_size=10))
    shuffled = data.draw(st.permutations(redelivered))
    job, events = fold(list(shuffled))
    assert state(expected_job) == state(job)
    assert expected_events == events


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(OUTCOMES, min_size=2, max_size=6),
    history=PROGRESS,
    data=st.data(),
)
def test_conflicts_are_order_independent_and_the_first_terminal_stays(
    outcomes: list[Observation], history: list[Observation], data: st.DataObject
) -> None:
    """With disagreeing terminal reports, the event set and the conflict are the same in any
    order; the status is whichever terminal arrived first (sticky), never a later one."""
    deliveries = data.draw(st.permutations(history + outcomes))
    job, events = fold(list(deliveries))
    _, reference_events = fold(sorted(deliveries, key=repr))
    assert reference_events == events
    first_terminal = next(o for o in deliveries if o.status and o.status.terminal)
    assert first_terminal.status == job.status
    distinct = {o.kind for o in outcomes}
    assert len(distinct) > 1 or not job.conflict
    assert sorted(distinct) == sorted(s.value for s in job.terminals)
    conflict_events = [e for e in events if e[0] == "job.conflict"]
    assert len(distinct) * (len(distinct) - 1) // 2 == len(conflict_events)


def test_the_fast_copy_of_a_job_keeps_every_field() -> None:
    """`_evolve` spells out Job's fields for speed; a field added to Job must be added there."""
    from dataclasses import fields

    from jobtrail.core.machine import _evolve

    markers = {f.name: object() for f in fields(Job)}
    job = Job(**markers)  # type: ignore[arg-type]
    copy = _evolve(job, {}, None)
    assert markers == {f.name: getattr(copy, f.name) for f in fields(Job)}


@given(
    kind=st.sampled_from(["queued", "processing", "succeeded", "failed", "cancelled", "tracked", "missing"]),
    progress=st.one_of(st.none(), st.integers(0, 100)),
    provider_status=st.one_of(st.none(), st.sampled_from(["QUEUED", "PROCESSING", "ERROR"])),
    provider_at=st.one_of(st.none(), st.just(T0 - timedelta(minutes=3))),
    urls=st.sampled_from([(), ("https://cdn.example/out.mp4",)]),
    error=st.one_of(st.none(), st.just("boom")),
)
def test_a_first_observation_builds_what_folding_it_into_a_blank_job_builds(
    kind: str,
    progress: int | None,
    provider_status: str | None,
    provider_at: datetime | None,
    urls: tuple[str, ...],
    error: str | None,
) -> None:
    """`apply(None, ...)` builds a first `queued`/`processing` directly (intake's usual
    case); it must equal the general fold of the same observation into a blank job."""
    from jobtrail.core import machine

    o = Observation("pixazo", "job-9", kind, progress, urls, error, provider_status, provider_at)
    general = machine._step(machine._BLANK, o, machine.fingerprint(o), T0, identity=("pixazo", "job-9", T0))
    assert general == apply(None, o, T0)
