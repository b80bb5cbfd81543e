"""Reading the application's prometheus registry in tests."""

from __future__ import annotations

from jobtrail.receiver.metrics import Metrics


def counted(metrics: Metrics, name: str) -> dict[str, float]:
    """The samples of a one-label counter (`name`, without `_total`), by that label's value."""
    return {
        next(iter(sample.labels.values()), ""): sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == f"{name}_total"
    }
