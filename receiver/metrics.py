"""`GET /metrics`: prometheus-client's registry, one per application.

Counters move as things happen (a delivery taken, a stream dropped); histograms time
webhook handling and the store's group commits; the gauges (outbox depth, dead letters,
open jobs, listeners, leadership) are read from the store and the health board when
scraped, by `Metrics.refresh` just before the registry is rendered.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobtrail.runtime.health import Health, State
from jobtrail.runtime.leader import Leadership
from jobtrail.store.base import Store

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what every Prometheus version scrapes

# Seconds: a webhook answered from one group commit takes about a millisecond on SQLite.
_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self._deliveries = Counter(
            "jobtrail_deliveries",
            "Inbound deliveries (webhooks, API reports, poll replies, stream events) taken by "
            "this process, by verdict.",
            ["provider", "source", "verdict"],
            registry=registry,
        )
        self._http_refused = Counter(
            "jobtrail_http_refused",
            "Requests refused as malformed HTTP before reaching a route, by reason.",
            ["reason"],
            registry=registry,
        )
        self._not_kept = Counter(
            "jobtrail_refusals_not_kept",
            "Unauthenticated webhook refusals over their source's budget: answered 429, not stored.",
            ["provider"],
            registry=registry,
        )
        self._stream_drops = Counter(
            "jobtrail_stream_disconnects",
            "Event streams ended by jobtrail, by reason (slow: the client stopped reading).",
            ["reason"],
            registry=registry,
        )
        self._webhook_seconds = Histogram(
            "jobtrail_webhook_seconds",
            "Time from a webhook's request to its answer, by provider (including the commit).",
            ["provider"],
            buckets=_LATENCY,
            registry=registry,
        )
        self._commit_seconds = Histogram(
            "jobtrail_store_commit_seconds",
            "Time one group commit of the store took (written and durable).",
            buckets=_LATENCY,
            registry=registry,
        )
        self._batch_size = Histogram(
            "jobtrail_store_commit_batch_size",
            "Writes (deliveries, attempt records) in one group commit.",
            buckets=_BATCH,
            registry=registry,
        )
        self._outbox = Gauge(
            "jobtrail_outbox_items",
            "Outbox items not done yet, by kind, sink and status (pending or dead).",
            ["kind", "sink", "status"],
            registry=registry,
        )
        self._dead = Gauge(
            "jobtrail_dead_letters",
            "Outbox items that used up their retries (replay them), by sink.",
            ["sink"],
            registry=registry,
        )
        self._open_jobs = Gauge(
            "jobtrail_open_jobs", "Jobs not terminal yet, by provider.", ["provider"], registry=registry
        )
        self.streams = Gauge(
            "jobtrail_streams_open", "Event streams (GET /api/events) open now.", registry=registry
        )

    def delivery(self, provider: str, source: str, verdict: str) -> None:
        self._deliveries.labels(provider, source, verdict).inc()

    def refused_http(self, reason: str) -> None:
        """A request aiohttp's parser refused (answered 4xx before any route)."""
        self._http_refused.labels(reason).inc()

    def refusal_not_kept(self, provider: str) -> None:
        """An unauthenticated webhook refused over its source's budget: answered 429, not kept."""
        self._not_kept.labels(provider).inc()

    def stream_dropped(self, reason: str) -> None:
        self._stream_drops.labels(reason).inc()

    def webhook_handled(self, provider: str, seconds: float) -> None:
        self._webhook_seconds.labels(provider).observe(seconds)

    def commit(self, seconds: float, size: int) -> None:
        """The store's commit observer (`Store.commit_observer`)."""
        self._commit_seconds.observe(seconds)
        self._batch_size.observe(size)

    def watch(self, store: Store, health: Health, leadership: Leadership) -> None:
        """Report what the store commits, and show the board and the role when scraped."""
        store.commit_observer = self.commit
        self.registry.register(_Live(store, health, leadership))

    async def refresh(self, store: Store) -> None:
        """Read the gauges that need a query (before `render`)."""
        gauges = await store.gauges()
        self._outbox.clear()
        self._dead.clear()
        self._open_jobs.clear()
        dead: dict[str, int] = {}
        for (kind, sink, status), count in gauges.outbox.items():
            self._outbox.labels(kind, sink, status).set(count)
            if status == "dead":
                dead[sink] = dead.get(sink, 0) + count
        for sink, count in dead.items():
            self._dead.labels(sink).set(count)
        for provider, count in gauges.open_jobs.items():
            self._open_jobs.labels(provider).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Live(Collector):
    """Read at each scrape: events this process appended, the components, the role."""

    def __init__(self, store: Store, health: Health, leadership: Leadership) -> None:
        self.store, self.health, self.leadership = store, health, leadership

    def collect(self) -> Iterable[Metric]:
        events = CounterMetricFamily(
            "jobtrail_events",
            "Events this process appended to the log (job reports and dispatch outcomes alike).",
        )
        events.add_metric([], self.store.events_appended)
        yield events
        leader = GaugeMetricFamily(
            "jobtrail_leader", "1 while this replica leads (runs the Oxen stream and the pollers)."
        )
        leader.add_metric([], 1 if self.leadership.leading else 0)
        yield leader
        yield from _components(self.health.snapshot())


def _components(board: dict[str, dict[str, Any]]) -> Iterable[Metric]:
    healthy = GaugeMetricFamily(
        "jobtrail_component_healthy",
        "1 when a listener, poller, worker or the leadership loop is healthy.",
        labels=["component", "kind"],
    )
    state = GaugeMetricFamily(
        "jobtrail_component_state",
        "1 for the state each component is in now, 0 for the others.",
        labels=["component", "state"],
    )
    outcomes = CounterMetricFamily(
        "jobtrail_component_outcomes",
        "What each component saw: poll replies, stream events, dispatch attempt outcomes.",
        labels=["component", "outcome"],
    )
    for name, c in board.items():
        healthy.add_metric([name, c["kind"]], 1 if c["healthy"] else 0)
        for each in State:
            state.add_metric([name, each.value], 1 if c["state"] == each.value else 0)
        for what, count in sorted(c["counts"].items()):
            outcomes.add_metric([name, what], count)
    yield from (healthy, state, outcomes)
