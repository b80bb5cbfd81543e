"""A bounded fuzz run in `./dev test`: a few hundred hostile requests drawn by hypothesis
at every route of the receiver as `jobtrail serve` runs it (bench/fuzz), each answered by
jobtrail, none 5xx, every error JSON, every webhook a route answered kept, and the
database intact. `./dev fuzz` runs the same for 10,000 requests and prints the counts."""

from __future__ import annotations

from pathlib import Path

from bench.fuzz.run import fuzz
from bench.fuzz.target import Tally

REQUESTS = 300


def test_hostile_requests_at_every_route(tmp_path: Path) -> None:
    tally = Tally()
    integrity = fuzz(tmp_path, REQUESTS, tally, strict=True)
    assert [] == tally.problems
    assert "ok" == integrity
    assert tally.counts["requests"] >= REQUESTS
    assert tally.counts["webhooks to keep"] > 0, "no webhook got far enough to be checked"
