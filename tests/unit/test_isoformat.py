"""`core.model.isoformat` is `datetime.isoformat`, only cheaper: the same text for every time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from jobtrail.core.model import isoformat

ZONES = st.sampled_from([UTC, None, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)), ZONES)
def test_the_same_text_as_datetime_isoformat(at: datetime, zone: timezone | None) -> None:
    at = at.replace(tzinfo=zone)
    assert at.isoformat() == isoformat(at)


def test_whole_seconds_have_no_fraction_and_early_years_four_digits() -> None:
    assert "2026-05-22T13:19:23+00:00" == isoformat(datetime(2026, 5, 22, 13, 19, 23, tzinfo=UTC))
    assert "2026-05-22T13:19:23.000001+00:00" == isoformat(datetime(2026, 5, 22, 13, 19, 23, 1, tzinfo=UTC))
    assert "0999-01-02T03:04:05+00:00" == isoformat(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC))
