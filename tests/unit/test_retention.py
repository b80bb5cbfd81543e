"""store/retention.py: which old deliveries go, and where the pruner may start next
time; which outbox items go; which old jobs go whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobtrail.store.retention import choose_jobs, choose_notifications, decide

NOW = datetime(2026, 12, 5, tzinfo=UTC)
RAW, REJECTED = NOW - timedelta(days=30), NOW - timedelta(days=10)


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def test_each_verdict_past_its_window() -> None:
    rows = [
        (1, "accepted", days_ago(40)),
        (2, "duplicate", days_ago(40)),
        (3, "rejected", days_ago(40)),
        (4, "accepted", days_ago(31)),
        (5, "rejected", days_ago(20)),  # past the rejected window only
        (6, "accepted", days_ago(20)),  # inside the raw window
        (7, "duplicate", days_ago(5)),  # inside both: the page ends here
        (8, "rejected", days_ago(40)),  # never looked at
    ]
    decision = decide(rows, 0, RAW, REJECTED, page=10)
    assert [1, 2, 3, 4, 5] == decision.delete
    assert (6, 4, False, True) == (decision.last, decision.done_until, decision.all_done, decision.finished)


def test_a_page_of_old_rows_only_is_all_done_and_not_finished() -> None:
    rows = [(n, "duplicate", days_ago(50)) for n in range(11, 14)]
    decision = decide(rows, 10, RAW, REJECTED, page=3)
    assert ([11, 12, 13], 13, 13, True, False) == (
        decision.delete,
        decision.last,
        decision.done_until,
        decision.all_done,
        decision.finished,
    )


def test_an_empty_page_is_the_end_of_the_log() -> None:
    decision = decide([], 42, RAW, REJECTED, page=500)
    assert (42, None, True) == (decision.last, decision.done_until, decision.finished)


def test_a_window_that_keeps_forever_keeps_everything() -> None:
    forever = datetime.min.replace(tzinfo=UTC)
    rows = [(1, "rejected", days_ago(4000)), (2, "accepted", days_ago(4000))]
    decision = decide(rows, 0, forever, forever, page=10)
    assert ([], 0, True) == (decision.delete, decision.last, decision.finished)


def test_rows_between_the_windows_hold_the_start_back_but_not_the_page() -> None:
    rows = [
        (1, "accepted", days_ago(40)),
        (2, "rejected", days_ago(20)),
        (3, "accepted", days_ago(15)),
    ]  # deliveries kept 10 days, refusals 30
    decision = decide(rows, 0, days_ago(10), days_ago(30), page=3)
    assert [1, 3] == decision.delete, "the rejected one has 10 days left"
    assert (1, False, 3) == (decision.done_until, decision.all_done, decision.last)


def test_old_finished_jobs_without_pending_work_are_chosen_and_the_cut_ends_the_walk() -> None:
    cut = datetime(2026, 12, 1, tzinfo=UTC)
    old, new = cut - timedelta(days=1), cut + timedelta(seconds=1)
    page = [
        (1, "pixazo", "done", "succeeded", old, old, False),
        (2, "pixazo", "open", "processing", old, old, False),  # not finished
        (3, "pixazo", "busy", "failed", old, old, True),  # a notification still due
        (4, "pixazo", "late", "cancelled", old, new, False),  # changed after the cut
        (5, "venice", "gone", "failed", old, old, False),
        (6, "venice", "fresh", "failed", new, new, False),  # created after the cut: the end
        (7, "venice", "never", "failed", old, old, False),
    ]
    choice = choose_jobs(page, 0, cut, 10)
    assert [(1, "pixazo", "done"), (5, "venice", "gone")] == choice.remove
    assert (5, True) == (choice.last, choice.finished)


def test_a_full_page_of_old_jobs_is_not_the_end_of_the_walk() -> None:
    cut = datetime(2026, 12, 1, tzinfo=UTC)
    old = cut - timedelta(days=1)
    page = [(n, "oxen", f"j{n}", "processing", old, old, False) for n in range(11, 14)]
    assert (13, False) == choose_jobs(page, 10, cut, 3)[1:]
    assert (10, True) == choose_jobs([], 10, cut, 3)[1:]


def test_notifications_done_before_the_cut_go_and_the_first_item_created_after_it_ends_the_walk() -> None:
    cut = datetime(2026, 12, 1, tzinfo=UTC)
    old, new = cut - timedelta(days=1), cut + timedelta(seconds=1)
    page = [
        (1, "notify", "done", old, old),
        (2, "download", "done", old, old),  # the job's record of its file: kept
        (3, "notify", "dead", old, old),  # kept for a replay by hand
        (4, "notify", "pending", old, old),  # work still to do: the walk's start stops here
        (5, "notify", "done", old, new),  # done after the cut: inside the window
        (6, "notify", "done", old, cut - timedelta(microseconds=1)),
        (7, "notify", "done", new, new),  # created after the cut: the walk ends here
        (8, "notify", "done", old, old),  # never looked at
    ]
    sweep = choose_notifications(page, 0, cut, page=10)
    assert ([1, 6], 6, 3, True) == (sweep.delete, sweep.last, sweep.settled, sweep.finished)


def test_a_full_page_of_settled_items_is_not_the_end_and_an_empty_one_is() -> None:
    cut = datetime(2026, 12, 1, tzinfo=UTC)
    old = cut - timedelta(days=40)
    kinds = ["notify", "download", "notify"]  # by n % 3: 11 and 12 notifications, 13 a download
    sweep = choose_notifications(
        [(n, kinds[n % 3], "done", old, old) for n in range(11, 14)], 10, cut, page=3
    )
    assert ([11, 12], 13, 13, False) == (sweep.delete, sweep.last, sweep.settled, sweep.finished)
    assert ([], 42, None, True) == tuple(choose_notifications([], 42, cut, page=3))
    pending_first = choose_notifications([(43, "notify", "pending", old, old)], 42, cut, page=3)
    assert (None, 43) == (pending_first.settled, pending_first.last)
