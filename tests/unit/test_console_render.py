"""console/render.py: the overview's chart and its per-process minute counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jobtrail.console.render import Chart, EventRate, pretty, size, when


class _Log:
    """`events_per_minute` over a fixed list of event times, recording each `since` asked."""

    def __init__(self, times: list[datetime]) -> None:
        self.times = times
        self.asked: list[datetime] = []

    async def events_per_minute(self, since: datetime) -> list[tuple[datetime, int]]:
        self.asked.append(since)
        counts: dict[datetime, int] = {}
        for at in self.times:
            if at >= since:
                minute = at.replace(second=0, microsecond=0)
                counts[minute] = counts.get(minute, 0) + 1
        return sorted(counts.items())


NOW = datetime(2026, 12, 5, 12, 30, 30, tzinfo=UTC)


async def test_the_event_rate_counts_a_passed_minute_once_and_agrees_with_the_log() -> None:
    times = [NOW - timedelta(minutes=m, seconds=s) for m in range(0, 400, 7) for s in (1, 20)]
    log = _Log(times)
    rate = EventRate()
    first = await rate.per_minute(log, NOW, 6)  # type: ignore[arg-type]
    assert first == await log.events_per_minute(NOW.replace(second=0) - timedelta(hours=6))
    log.times.append(NOW + timedelta(seconds=10))
    later = NOW + timedelta(minutes=3)
    second = await rate.per_minute(log, later, 6)  # type: ignore[arg-type]
    assert log.asked[-1] >= NOW - timedelta(minutes=3), "only the last minutes are counted again"
    assert second == await log.events_per_minute(later.replace(second=0) - timedelta(hours=6))


def test_the_chart_has_a_bar_per_busy_minute_scaled_to_the_peak() -> None:
    minute = NOW.replace(second=0, microsecond=0)
    chart = Chart([(minute - timedelta(minutes=1), 4), (minute, 2)], NOW, 1)
    assert (6, 4, 2) == (chart.total, chart.peak, len(chart.bars))
    assert [0.0, 60.0] == [y for _, y, _, _ in chart.bars]
    assert 0 == Chart([], NOW, 1).total and [] == Chart([], NOW, 1).bars


def test_filters_show_times_in_utc_sizes_and_json_for_people() -> None:
    assert "2026-12-05 12:30:30.000Z" == when(NOW.astimezone(UTC))
    assert "2026-12-05 11:30:30.250Z" == when("2026-12-05T12:30:30.250+01:00")
    assert "" == when(None)
    assert ("512 B", "1.5 KiB", "") == (size(512), size(1536), size(None))
    shown: Any = pretty({"b": 1, "a": "é"})
    assert '{\n  "a": "é",\n  "b": 1\n}' == shown
