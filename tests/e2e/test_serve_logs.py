"""A running service never writes a configured secret to its logs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from jobtrail.providers import apiframe
from tests.e2e.helpers import free_port, start_serve

pytestmark = pytest.mark.slow

SECRETS = {
    "JOBTRAIL_WEBHOOK_TOKEN": "webhook-token-secret-111111",
    "JOBTRAIL_API_TOKEN": "api-token-secret-22222222",
    "PIXAZO_API_KEY": "pixazo-key-secret-333",
    "APIFRAME_API_KEY": "apiframe-key-secret-444",
    "OXEN_API_KEY": "oxen-key-secret-555",
    "VENICE_API_KEY": "venice-key-secret-666",
    "JOBTRAIL_NOTIFY_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_no_configured_secret_appears_in_the_logs(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **SECRETS,
        "JOBTRAIL_PORT": str(port),
        "JOBTRAIL_DATA_DIR": str(tmp_path),
        "JOBTRAIL_LOG_LEVEL": "debug",
        "JOBTRAIL_NOTIFY_WEBHOOK_URL": "https://hooks.example.com/in",
    }
    log_path = tmp_path / "serve.log"
    process = start_serve(env, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        token = SECRETS["JOBTRAIL_WEBHOOK_TOKEN"]
        ok = json.dumps({"request_id": "r1", "status": "PROCESSING"}).encode()
        assert 200 == post(f"{base}/webhooks/pixazo/{token}", ok, {"Content-Type": "application/json"})
        assert 401 == post(f"{base}/webhooks/pixazo/{token}x", ok, {"Content-Type": "application/json"})
        body = b'{"jobId": "a1", "status": "COMPLETED"}'
        key = apiframe.signing_key(SECRETS["APIFRAME_API_KEY"])
        headers = {"Content-Type": "application/json", "X-Webhook-Signature": apiframe.sign(key, body)}
        assert 200 == post(f"{base}/webhooks/apiframe", body, headers)
        assert 401 == post(f"{base}/webhooks/apiframe", body + b" ", headers)
        bearer = {"Authorization": f"Bearer {SECRETS['JOBTRAIL_API_TOKEN']}x"}
        assert 401 == post(f"{base}/api/jobs", b"{}", {**bearer, "Content-Type": "application/json"})
    finally:
        process.terminate()
        process.wait(10)
    logs = log_path.read_text()
    assert "webhook_rejected" in logs and "webhook_received" in logs, "nothing was logged to check"
    for name, secret in SECRETS.items():
        assert secret not in logs, f"{name} leaked into the logs"
