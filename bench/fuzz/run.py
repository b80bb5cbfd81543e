"""bench/fuzz: hostile requests at every route of a running jobtrail, counted.

    ./dev fuzz [--requests 10000] [--seed N]     (python -m bench.fuzz.run)

Draws each request with hypothesis (bench/fuzz/requests.py), sends it as raw bytes on a
new connection to jobtrail running on a thread (bench/fuzz/target.py), checks its answer,
and at the end checks that every webhook request a route answered is kept and that the
database passes `PRAGMA integrity_check`. Prints the counts; exits 1 if anything was
wrong, listing the requests that caused it. `./dev test` runs the same checks on a few
hundred requests (tests/integration/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings

from bench.fuzz.requests import Shot, shots
from bench.fuzz.target import Tally, Target
from jobtrail.core import logs


def fuzz(data_dir: Path, requests: int, tally: Tally, *, strict: bool, chosen_seed: int | None = None) -> str:
    """Send `requests` drawn requests; with `strict`, the first problem fails the run (and
    hypothesis shrinks it to the smallest request that shows it). Returns the database's
    integrity check."""
    with Target(data_dir) as target:

        @settings(
            max_examples=requests,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=chosen_seed is None and strict,
        )
        @given(shots(target.keys))
        def one(shot: Shot) -> None:
            problems = tally.shoot(target, shot)
            assert not (strict and problems), problems

        (seed(chosen_seed)(one) if chosen_seed is not None else one)()
        tally.problems += tally.unkept(target.kept_ids())
    return target.integrity()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    logs.configure(level="error", fmt="json")
    tally = Tally()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="jobtrail-fuzz-") as tmp:
        integrity = fuzz(Path(tmp), args.requests, tally, strict=False, chosen_seed=args.seed)
    took = time.monotonic() - started
    print(f"bench/fuzz: {tally.counts['requests']} requests in {took:.0f} s")
    for always in ("5xx", "no answer"):  # shown when zero too: they are what the run is for
        tally.counts[always] += 0
    for name, count in sorted(tally.counts.items()):
        print(f"  {name:<28} {count}")
    print(f"  {'PRAGMA integrity_check':<28} {integrity}")
    print(f"  {'problems':<28} {len(tally.problems)} (5xx, no answer, an error not in JSON, not kept)")
    for problem in tally.problems[:50]:
        print(f"  PROBLEM {problem}")
    return 0 if not tally.problems and integrity == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
