"""The README's "Trying it by hand" block, run as written by bash (only its two fixed
ports swapped for free ones): `jobtrail` from the activated venv, `jobtrail simulate`,
`jobtrail serve` pointed at it, two submissions, and the jobs listed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import free_port, free_ports

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, f"no sh block under {heading!r}"
    return found.group(1)


def test_the_readmes_steps_run_as_written(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("the README's block waits with curl, which this machine lacks")
    venv = Path(sys.executable).parent.parent
    (tmp_path / ".venv").symlink_to(venv)
    first, port = free_ports(4), free_port()  # the simulators' four, free (a taken one hung the block)
    while any(free == port for free in range(first, first + 4)):
        port = free_port()
    block = readme_block("Trying it by hand, against the simulators")
    block = block.replace("9101", str(first)).replace("8080", str(port))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBTRAIL_", "PIXAZO_", "APIFRAME_"))}
    env = {k: v for k, v in env.items() if not k.startswith(("OXEN_", "VENICE_"))}
    run = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log = (tmp_path / "jobtrail.log").read_text() if (tmp_path / "jobtrail.log").exists() else ""
    assert 0 == run.returncode, run.stdout + run.stderr + log
    listed = run.stdout.splitlines()
    submitted = [line for line in listed if re.match(r"(pixazo|venice) \S+: queued", line)]
    assert 2 == len(submitted), run.stdout
    for line in submitted:
        job_id = line.split(":")[0].split()[1]
        assert any(job_id in row and "succeeded" in row for row in listed), (job_id, run.stdout, log)
