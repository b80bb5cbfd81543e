"""A bounded schemathesis run against a live `jobtrail serve`: every described route with
generated input (hostile strings, wrong types, missing fields). No answer may be a 5xx,
and every answer must match the description (tests/integration/test_openapi.py keeps the
description complete)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import free_port, start_serve

pytestmark = pytest.mark.slow

TOKEN = "schema-api-token-0123456789"
EXAMPLES = os.environ.get("JOBTRAIL_SCHEMATHESIS_EXAMPLES", "25")
SEED = os.environ.get("JOBTRAIL_SCHEMATHESIS_SEED", "1")  # fixed in CI: the same cases every run


def test_generated_requests_get_no_5xx_and_answers_match_the_description(tmp_path: Path) -> None:
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if schemathesis is None:
        pytest.skip("schemathesis is not installed (it comes with the dev extra)")
    port = free_port()
    env = {
        "JOBTRAIL_PORT": str(port),
        "JOBTRAIL_DATA_DIR": str(tmp_path / "data"),
        "JOBTRAIL_API_TOKEN": TOKEN,
        "JOBTRAIL_WEBHOOK_TOKEN": "schema-webhook-token-0123456789",
        "APIFRAME_API_KEY": "schema-apiframe-key-0123456789",
        "APIFRAME_BASE_URL": f"http://127.0.0.1:{free_port()}",  # nothing there: no real provider is asked
    }
    server = start_serve(env, tmp_path / "serve.log")
    try:
        run = subprocess.run(
            [
                schemathesis,
                "run",
                f"http://127.0.0.1:{port}/api/openapi.json",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,"
                "response_schema_conformance",
                "--max-examples",
                EXAMPLES,
                "--seed",
                SEED,
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--request-timeout",
                "30",
                "--exclude-path",
                "/api/events",  # a stream: it never ends, so it has no answer to check
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=tmp_path,  # what schemathesis keeps between runs stays out of the repository
            env={**os.environ, "SCHEMATHESIS_HOOKS": "", "HOME": str(tmp_path)},
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    report = run.stdout + run.stderr
    assert 0 == run.returncode, report[-6000:]
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
