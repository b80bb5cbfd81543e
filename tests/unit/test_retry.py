"""Backoff and poll schedules are values with a formula; checked over tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobtrail.core.retry import Backoff, retry_after_seconds
from jobtrail.listeners.schedule import PollSchedule

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("n", "ceiling"), [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (6, 30), (500, 30)]
)
def test_backoff_doubles_to_the_cap_jittered_between_half_and_whole(n: int, ceiling: float) -> None:
    policy = Backoff()
    assert ceiling == policy.delay(n, rand=lambda: 0.0)
    assert ceiling / 2 == policy.delay(n, rand=lambda: 1.0)


def test_a_server_delay_raises_the_floor_up_to_its_cap() -> None:
    policy = Backoff()
    assert 20 == policy.delay(0, server=20, rand=lambda: 0.0)
    assert 300 == policy.delay(0, server=10_000, rand=lambda: 0.0)
    assert 30 == policy.delay(9, server=2, rand=lambda: 0.0)


def test_a_negative_attempt_is_the_first() -> None:
    assert 1 == Backoff().delay(-3, rand=lambda: 0.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("Sat, 21 Nov 2026 12:00:30 GMT", 30.0),
        ("Sat, 21 Nov 2026 11:00:00 GMT", 0.0),
        ("-5", None),
        ("soon", None),
        ("1.5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(value: str | None, expected: float | None) -> None:
    assert expected == retry_after_seconds(value, NOW)


@pytest.mark.parametrize(
    ("age", "interval"), [(0, 5), (30, 5), (50, 5), (600, 60), (3000, 300), (10**6, 300)]
)
def test_polls_are_frequent_while_young_and_back_off_to_a_cap(age: float, interval: float) -> None:
    schedule = PollSchedule()
    assert interval == pytest.approx(schedule.interval(age, rand=lambda: 0.0))
    assert interval * 0.9 == pytest.approx(schedule.interval(age, rand=lambda: 1.0))
