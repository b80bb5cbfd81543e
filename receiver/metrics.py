"""Counters for `GET /metrics`, in the Prometheus text format."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any


class Metrics:
    def __init__(self) -> None:
        self.deliveries: Counter[tuple[str, str, str]] = Counter()
        self.events = 0

    def delivery(self, provider: str, source: str, verdict: str, events: int = 0) -> None:
        self.deliveries[(provider, source, verdict)] += 1
        self.events += events

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
        return "\n".join(lines) + "\n"


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
