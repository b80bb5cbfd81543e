"""`jobtrail demo` as a newcomer runs it, and the whole flow under heavier faults."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobtrail.simulators.base import Faults
from jobtrail.simulators.demo import Plan, run_demo

pytestmark = pytest.mark.slow

CLIPS = "https://media.example.com/clips"


def test_jobtrail_demo_exits_0_with_its_summary(tmp_path: Path) -> None:
    env = {**os.environ, "JOBTRAIL_DATA_DIR": str(tmp_path / "unused")}
    done = subprocess.run(
        [sys.executable, "-m", "jobtrail.receiver.cli", "demo", "--keep", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    out = done.stdout
    assert "demo: every job ended as it should" in out
    assert "PROVIDER  JOB" in out and "WRONG" not in out
    rows = [
        line
        for line in out.splitlines()
        if line.startswith("  ")
        and line.split()[0] in ("pixazo", "apiframe", "oxen", "venice")
        and len(line.split()) >= 8
    ]
    assert 8 == len(rows)
    assert {"succeeded", "failed", "cancelled"} == {row.split()[3] for row in rows}
    assert (tmp_path / "demo" / "jobtrail.db").exists()
    assert 4 == len(list((tmp_path / "demo" / "downloads").glob("*/*/*.mp4")))


async def test_many_jobs_under_every_fault_end_right_with_one_download_and_one_notification(
    tmp_path: Path,
) -> None:
    """Duplicates, reordering, lost pushes, stream drops and 5xx/429 bursts at every
    provider, five jobs each: every job ends as it should, each success with exactly one
    completed download, each job with exactly one notification (the run checks both)."""
    faults = {
        "pixazo": Faults(duplicate=0.5, delay=0.3, reorder=True, error_burst=2, seed=1),
        "apiframe": Faults(drop=0.5, duplicate=0.5, reorder=True, throttle_burst=2, seed=2),
        "oxen": Faults(
            drop=0.3, duplicate=0.5, delay=0.3, disconnect_after=1.0, error_burst=2, cut_downloads=2, seed=3
        ),
        "venice": Faults(error_burst=2, throttle_burst=2, cut_downloads=1, slow_download=0.01, seed=4),
    }
    outcomes = ["ok", "ok", "fail", "ok", "error"]
    plans = []
    for provider in ("pixazo", "apiframe", "oxen", "venice"):
        for n, outcome in enumerate(outcomes):
            word = {"ok": f"clip{n}", "fail": f"fail{n}", "error": f"error{n}"}[outcome]
            if provider == "oxen" and n == 4:
                plans.append(Plan(provider, f"{CLIPS}/long{n}.mp4?seconds=10", "cancelled", {}, "cancelled"))
                continue
            expect = "succeeded" if outcome == "ok" else "failed"
            plans.append(Plan(provider, f"{CLIPS}/{word}.mp4?seconds={1 + n % 3}", expect, {}, outcome))
    out = io.StringIO()
    code = await run_demo(out, keep=tmp_path / "many", plans=plans, faults=faults, deadline=90)
    assert 0 == code, out.getvalue()
    assert 20 == out.getvalue().count("submitted ")


def test_on_a_terminal_the_demo_redraws_a_live_table(tmp_path: Path) -> None:
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "jobtrail.receiver.cli", "demo", "--keep", str(tmp_path / "tty")],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "JOBTRAIL_DATA_DIR": str(tmp_path / "unused")},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert 0 == process.wait(120)
    os.close(leader)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "\x1b[2K" in screen and "F" in screen, "lines are redrawn in place"
    assert "demo: every job ended as it should" in screen
