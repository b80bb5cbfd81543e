"""`jobtrail serve` as a real process runs the Oxen stream and the pollers, and stops cleanly."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.helpers import free_port, serve_app, start_serve
from tests.integration.fake_providers import KEY, Answer, FakeProviders, keep_alive_forever, sse

pytestmark = pytest.mark.slow


async def test_serve_takes_oxen_events_from_the_stream_and_stops_cleanly(tmp_path: Path) -> None:
    fake = FakeProviders()
    fake.script("oxen", "e2e-1", Answer(body={"generation_id": "e2e-1", "status": "processing"}))

    async def one_event(response: web.StreamResponse, f: FakeProviders) -> None:
        done = {
            "generation_id": "e2e-1",
            "status": "succeeded",
            "media_type": "video",
            "model": "m",
            "url": "https://cdn.test/e2e-1.mp4",
        }
        await response.write(sse("media_generation_completed", done))
        await keep_alive_forever(response, f)

    fake.stream_scripts = [one_event]
    runner, fake_port = await serve_app(fake.app())
    port = free_port()
    env = {
        "JOBTRAIL_PORT": str(port),
        "JOBTRAIL_DATA_DIR": str(tmp_path),
        "OXEN_API_KEY": KEY,
        "OXEN_BASE_URL": f"http://127.0.0.1:{fake_port}",
    }
    process = await asyncio.to_thread(start_serve, env, tmp_path / "serve.log")
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
            job: dict[str, Any] = {}
            for _ in range(500):
                async with client.get("/api/jobs/oxen/e2e-1") as response:
                    job = await response.json() if response.status == 200 else {}
                if job.get("status") == "succeeded":
                    break
                await asyncio.sleep(0.02)
            assert "succeeded" == job.get("status")
            async with client.get("/api/jobs/oxen/e2e-1/events") as response:
                events = (await response.json())["events"]
            assert [("job.succeeded", "sse")] == [
                (e["type"], e["source"]) for e in events if e["type"].startswith("job.")
            ]
            async with client.get("/readyz") as response:
                ready = await response.json()
            assert "connected" == ready["listeners"]["oxen.sse"]["state"]
            assert "running" == ready["listeners"]["oxen.poller"]["state"]
        assert runner.server is not None and runner.server.connections, "the stream is open"
        process.send_signal(signal.SIGTERM)
        assert 0 == await asyncio.to_thread(process.wait, 15)
        for _ in range(200):
            if not runner.server.connections:
                break
            await asyncio.sleep(0.02)
        assert [] == runner.server.connections, "serve closed its stream on the way out"
    finally:
        if process.poll() is None:
            process.kill()
        await runner.cleanup()
