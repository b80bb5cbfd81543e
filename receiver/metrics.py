"""Counters for `GET /metrics`, in the Prometheus text format."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any


class Metrics:
    def __init__(self) -> None:
        self.deliveries: Counter[tuple[str, str, str]] = Counter()
        self.events = 0
        self.http_refused: Counter[str] = Counter()
        self.not_kept: Counter[str] = Counter()
        self.stream_drops: Counter[str] = Counter()
        self.streams = 0

    def delivery(self, provider: str, source: str, verdict: str, events: int = 0) -> None:
        self.deliveries[(provider, source, verdict)] += 1
        self.events += events

    def refused_http(self, reason: str) -> None:
        """A request aiohttp's parser refused (answered 4xx before any route)."""
        self.http_refused[reason] += 1

    def refusal_not_kept(self, provider: str) -> None:
        """An unauthenticated webhook refused over its source's budget: answered 429, not kept."""
        self.not_kept[provider] += 1

    def stream_dropped(self, reason: str) -> None:
        self.stream_drops[reason] += 1

    def render(self) -> str:
        lines = [
            "# HELP jobtrail_deliveries_total Raw inbound deliveries by verdict.",
            "# TYPE jobtrail_deliveries_total counter",
        ]
        for (provider, source, verdict), count in sorted(self.deliveries.items()):
            lines.append(
                f'jobtrail_deliveries_total{{provider="{provider}",source="{source}",'
                f'verdict="{verdict}"}} {count}'
            )
        lines += [
            "# HELP jobtrail_events_total Events appended to the log by this process.",
            "# TYPE jobtrail_events_total counter",
            f"jobtrail_events_total {self.events}",
        ]
        lines += _counter(
            "jobtrail_http_refused_total",
            "Requests refused as malformed HTTP before reaching a route, by reason.",
            "reason",
            self.http_refused,
        )
        lines += _counter(
            "jobtrail_refusals_not_kept_total",
            "Unauthenticated webhook refusals over their source's budget: answered 429, not stored.",
            "provider",
            self.not_kept,
        )
        lines += _counter(
            "jobtrail_stream_disconnects_total",
            "Event streams ended by jobtrail, by reason (slow: the client stopped reading).",
            "reason",
            self.stream_drops,
        )
        lines += [
            "# HELP jobtrail_streams_open Event streams (GET /api/events) open now.",
            "# TYPE jobtrail_streams_open gauge",
            f"jobtrail_streams_open {self.streams}",
        ]
        return "\n".join(lines) + "\n"


def _counter(name: str, help_text: str, label: str, counts: Counter[str]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    lines += [f'{name}{{{label}="{value}"}} {count}' for value, count in sorted(counts.items())]
    return lines


def render_components(board: Mapping[str, Mapping[str, Any]]) -> str:
    """The listeners', pollers' and worker's state and counts (from /readyz's board)."""
    lines = [
        "# HELP jobtrail_component_healthy 1 when a listener, poller or worker is healthy.",
        "# TYPE jobtrail_component_healthy gauge",
    ]
    for name, c in board.items():
        lines.append(
            f'jobtrail_component_healthy{{component="{name}",kind="{c["kind"]}",state="{c["state"]}"}} '
            f"{1 if c['healthy'] else 0}"
        )
    lines += [
        "# HELP jobtrail_component_outcomes_total What each component saw: poll replies, "
        "stream events, dispatch attempt outcomes.",
        "# TYPE jobtrail_component_outcomes_total counter",
    ]
    for name, c in board.items():
        for what, count in sorted(c["counts"].items()):
            lines.append(f'jobtrail_component_outcomes_total{{component="{name}",outcome="{what}"}} {count}')
    return "\n".join(lines) + "\n"
