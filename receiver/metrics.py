"""`GET /metrics`: prometheus-client's registry, one per application.

Counters move as things happen (a delivery taken, a stream dropped); histograms time
webhook handling and the store's group commits; the gauges (outbox depth, dead letters,
open jobs, listeners, leadership) are read from the store and the health board when
scraped, by `Metrics.refresh` just before the registry is rendered.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
        # Counted on intake's hot path: plain tallies, rendered by `_Tallies` when scraped
        # (a prometheus-client child takes a lock per update: 10 us a webhook, measured).
        self.deliveries: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.webhook_seconds: dict[str, Tally] = {}
        self.commit_seconds, self.batch_size = Tally(_LATENCY), Tally(_BATCH)
        self.round_trips: dict[str, Tally] = {}  # PostgreSQL's, by step
        registry.register(_Tallies(self))
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
        self.deliveries[(provider, source, verdict)] += 1

    def refused_http(self, reason: str) -> None:
        """A request aiohttp's parser refused (answered 4xx before any route)."""
        self._http_refused.labels(reason).inc()

    def refusal_not_kept(self, provider: str) -> None:
        """An unauthenticated webhook refused over its source's budget: answered 429, not kept."""
        self._not_kept.labels(provider).inc()

    def stream_dropped(self, reason: str) -> None:
        self._stream_drops.labels(reason).inc()

    def webhook_handled(self, provider: str, seconds: float) -> None:
        tally = self.webhook_seconds.get(provider)
        if tally is None:
            tally = self.webhook_seconds[provider] = Tally(_LATENCY)
        tally.observe(seconds)

    def commit(self, seconds: float, size: int) -> None:
        """The store's commit observer (`Store.commit_observer`)."""
        self.commit_seconds.observe(seconds)
        self.batch_size.observe(size)

    def round_trip(self, step: str, seconds: float) -> None:
        """The store's round-trip observer (`Store.round_trip_observer`)."""
        tally = self.round_trips.get(step)
        if tally is None:
            tally = self.round_trips[step] = Tally(_LATENCY)
        tally.observe(seconds)

    def watch(self, store: Store, health: Health, leadership: Leadership) -> None:
        """Report what the store commits, and show the board and the role when scraped."""
        store.commit_observer = self.commit
        store.round_trip_observer = self.round_trip
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


class Tally:
    """A histogram's buckets, sum and count, updated without a lock (one event loop)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        cumulative, buckets = 0, []
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric(labels, buckets, self.sum)


class _Tallies(Collector):
    """The tallies of `Metrics`, as prometheus families."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self.metrics
        deliveries = CounterMetricFamily(
            "jobtrail_deliveries",
            "Deliveries taken over HTTP by this process (webhooks, API reports), by verdict; "
            "poll replies and stream events: jobtrail_component_outcomes_total.",
            labels=["provider", "source", "verdict"],
        )
        for key, count in sorted(m.deliveries.items()):
            deliveries.add_metric(list(key), count)
        webhooks = HistogramMetricFamily(
            "jobtrail_webhook_seconds",
            "Time from a webhook's request to its answer, by provider (including the commit).",
            labels=["provider"],
        )
        for provider, tally in sorted(m.webhook_seconds.items()):
            tally.add_to(webhooks, [provider])
        commits = HistogramMetricFamily(
            "jobtrail_store_commit_seconds", "Time one group commit of the store took (written and durable)."
        )
        m.commit_seconds.add_to(commits, [])
        sizes = HistogramMetricFamily(
            "jobtrail_store_commit_batch_size", "Writes (deliveries, attempt records) in one group commit."
        )
        m.batch_size.add_to(sizes, [])
        trips = HistogramMetricFamily(
            "jobtrail_store_round_trip_seconds",
            "PostgreSQL: time one round trip of a group commit took, by step: read (the batch's jobs) "
            "and write (the rows, the append and the COMMIT, in one message).",
            labels=["step"],
        )
        for step, tally in sorted(m.round_trips.items()):
            tally.add_to(trips, [step])
        yield from (deliveries, webhooks, commits, sizes, trips)


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
        replanned = CounterMetricFamily(
            "jobtrail_store_plans_changed",
            "Batches of intakes planned again because a job changed between their read and their write "
            "(PostgreSQL: replicas writing the same jobs at once).",
        )
        replanned.add_metric([], self.store.plans_changed)
        yield replanned
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
