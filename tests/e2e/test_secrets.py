"""No configured secret leaves a running `jobtrail serve`: each is sent through every path
that once leaked it (issue 19, #3), then the logs, the database, `/metrics`, `/readyz` and
the API's answers are searched for it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.helpers import free_port, serve_app, start_serve
from tests.integration.fake_providers import KEY, Answer, FakeProviders
from tests.integration.rawhttp import exchange, request

pytestmark = pytest.mark.slow

SECRETS = {
    "JOBTRAIL_WEBHOOK_TOKEN": "webhook-token-secret-111111",
    "JOBTRAIL_API_TOKEN": "api-token-secret-22222222",
    "PIXAZO_API_KEY": "pixazo-key-secret-333",
    "APIFRAME_API_KEY": KEY,  # the fake Apiframe echoes it in a 401
    "VENICE_API_KEY": KEY,  # the fake Venice echoes it in a 404
    "JOBTRAIL_NOTIFY_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


async def test_no_secret_reaches_the_logs_the_database_metrics_readyz_or_the_api(tmp_path: Path) -> None:
    fake = FakeProviders()
    fake.script("venice", "v-gone", Answer(status=404, body={"error": f"no such job for key {KEY}"}))
    fake.script(
        "apiframe", "a-echo", Answer(status=401, body={"error": f"Authentication failed for key {KEY}"})
    )
    runner, fake_port = await serve_app(fake.app())
    port = free_port()
    env = {
        **SECRETS,
        "JOBTRAIL_PORT": str(port),
        "JOBTRAIL_DATA_DIR": str(tmp_path / "data"),
        "JOBTRAIL_LOG_LEVEL": "debug",
        "JOBTRAIL_LOG_FORMAT": "json",
        "VENICE_BASE_URL": f"http://127.0.0.1:{fake_port}",
        "APIFRAME_BASE_URL": f"http://127.0.0.1:{fake_port}",
        "JOBTRAIL_NOTIFY_WEBHOOK_URL": "https://hooks.example.com/in",
    }
    token, api = SECRETS["JOBTRAIL_WEBHOOK_TOKEN"], SECRETS["JOBTRAIL_API_TOKEN"]
    auth = {"Authorization": f"Bearer {api}"}
    log_path = tmp_path / "serve.log"
    process = await asyncio.to_thread(start_serve, env, log_path)
    seen: list[str] = []
    try:
        # The request line and a header, each with a byte aiohttp's parser refuses.
        raw = (
            b"POST /webhooks/pixazo/%s?x=\xff HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"
            % token.encode()
        )
        seen.append((await exchange(port, raw)).body.decode())
        raw = b"GET /api/jobs HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\x01\r\n\r\n" % api.encode()
        seen.append((await exchange(port, raw)).body.decode())
        # Secrets in the headers and the path of deliveries that are kept.
        leaky = {"Content-Type": "application/json", "X-Note": f"{token} {api} {KEY}", "Authorization": api}
        body = json.dumps({"request_id": "r1", "status": "PROCESSING"}).encode()
        for target in (f"/webhooks/pixazo/{token}", f"/webhooks/pixazo/{token}x", "/webhooks/apiframe"):
            seen.append(
                (await exchange(port, request("POST", target, headers=leaky, body=body))).body.decode()
            )
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=auth) as client:
            for provider, job in (("venice", "v-gone"), ("apiframe", "a-echo")):
                async with client.post("/api/jobs", json={"provider": provider, "id": job}) as response:
                    assert 201 == response.status
            readyz: dict[str, object] = {}
            for _ in range(400):  # the Apiframe poller asks, gets the 401 that quotes the key
                async with client.get("/readyz") as response:
                    readyz = await response.json()
                if "refused our key" in json.dumps(readyz):
                    break
                await asyncio.sleep(0.05)
            assert "refused our key" in json.dumps(readyz), readyz
            for path in (
                "/readyz",
                "/metrics",
                "/api/jobs",
                "/api/jobs/apiframe/a-echo",
                "/api/jobs/apiframe/a-echo/events",
                "/api/jobs/venice/v-gone",
                "/api/jobs/venice/v-gone/events",
                "/api/outbox",
            ):
                async with client.get(path) as response:
                    seen.append(await response.text())
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 20)
        await runner.cleanup()
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("jobtrail.db*"))
    logs = log_path.read_text()
    assert "http_refused" in logs and "webhook_rejected" in logs and "[redacted]" in "".join(seen)
    assert b"no such job for key" in stored, "the poll answer was kept, to search"
    for name, secret in SECRETS.items():
        assert secret not in logs, f"{name} is in the logs"
        assert secret.encode() not in stored, f"{name} is in the database"
        for answer in seen:
            assert secret not in answer, f"{name} is in an answer: {answer[:200]}"
