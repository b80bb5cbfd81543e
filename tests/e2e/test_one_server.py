"""One `jobtrail serve` per SQLite file; the other commands still work beside it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.helpers import free_port, start_serve

pytestmark = pytest.mark.slow

TOKEN = "one-server-token-0123456789"


def jobtrail(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobtrail.receiver.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_second_server_on_the_same_file_exits_2_naming_the_data_directory(tmp_path: Path) -> None:
    """Regression: a second server on the file released the first one's leases at start
    and claimed the same work (two downloads writing one part file)."""
    env = {
        "JOBTRAIL_PORT": str(free_port()),
        "JOBTRAIL_DATA_DIR": str(tmp_path),
        "JOBTRAIL_WEBHOOK_TOKEN": TOKEN,
        "JOBTRAIL_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
    }
    first = start_serve(env, tmp_path / "first.log")
    try:
        body = json.dumps({"request_id": "j1", "status": "FAILED", "error": "boom"}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{env['JOBTRAIL_PORT']}/webhooks/pixazo/{TOKEN}",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert 200 == answer.status

        second = jobtrail({**env, "JOBTRAIL_PORT": str(free_port())}, "serve")
        assert 2 == second.returncode
        assert f"JOBTRAIL_DATA_DIR {tmp_path}" in second.stderr
        assert f"another jobtrail serve (pid {first.pid})" in second.stderr

        listed = jobtrail(env, "jobs", "list")
        assert 0 == listed.returncode and "j1" in listed.stdout
        outbox = jobtrail(env, "outbox", "list")
        assert 0 == outbox.returncode and "slack" in outbox.stdout
        replay = jobtrail(env, "outbox", "replay", "--sink", "slack")
        assert 0 == replay.returncode, replay.stderr
        assert first.poll() is None, "the running server is untouched"
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(20)
    assert 0 == first.returncode
    restarted = start_serve(env, tmp_path / "first.log")  # the lock ended with its holder
    restarted.send_signal(signal.SIGKILL)
    restarted.wait(20)
    again = start_serve(env, tmp_path / "first.log")  # a SIGKILL leaves no stale lock
    again.send_signal(signal.SIGTERM)
    assert 0 == again.wait(20)
