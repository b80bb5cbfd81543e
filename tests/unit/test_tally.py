"""The lock-free histogram behind jobtrail_webhook_seconds, read back through prometheus_client."""

from __future__ import annotations

from prometheus_client.metrics_core import HistogramMetricFamily

from jobtrail.receiver.metrics import Tally


def test_buckets_are_cumulative_and_a_value_on_a_bound_counts_in_it() -> None:
    tally = Tally((0.001, 0.01, 0.1))
    for value in (0.0005, 0.001, 0.002, 0.05, 7.0):
        tally.observe(value)
    family = HistogramMetricFamily("t", "test", labels=["p"])
    tally.add_to(family, ["x"])
    got = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert 2 == got[("t_bucket", "0.001")], "0.0005 and 0.001 (le: less than or equal)"
    assert 3 == got[("t_bucket", "0.01")]
    assert 4 == got[("t_bucket", "0.1")]
    assert 5 == got[("t_bucket", "+Inf")] == got[("t_count", None)]
    assert abs(got[("t_sum", None)] - 7.0535) < 1e-9
