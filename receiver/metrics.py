"""Counters for `GET /metrics`, in the Prometheus text format."""

from __future__ import annotations

from collections import Counter


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
