"""The simulators refuse what the real providers refuse, so the client code is checked
against them; and they keep the providers' odd promises (PROVIDERS.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jobtrail.simulators.cluster import KEYS, Cluster


@pytest.fixture
async def sims() -> Any:
    cluster = Cluster.build()
    await cluster.start()
    yield cluster
    await cluster.stop()


async def call(session: Any, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with session.request(method, url, **kw) as r:
        body = await r.json(content_type=None) if r.content_type == "application/json" else await r.read()
        return r.status, body


PIXAZO = "/topaz-upscale-video-753/v1/topaz-upscale-video-request"


@pytest.mark.parametrize(
    ("provider", "method", "path", "body"),
    [
        ("pixazo", "POST", PIXAZO, {"video_url": "https://v/a.mp4"}),
        ("pixazo", "GET", "/v2/requests/status/x", None),
        ("apiframe", "POST", "/v2/videos/upscale", {}),
        ("apiframe", "GET", "/v2/jobs/x", None),
        ("oxen", "POST", "/api/ai/queue", {}),
        ("oxen", "GET", "/api/events", None),
        ("venice", "POST", "/api/v1/video/queue", {}),
        ("venice", "POST", "/api/v1/video/retrieve", {}),
    ],
)
async def test_a_wrong_key_is_refused_with_401(
    sims: Cluster, provider: str, method: str, path: str, body: Any
) -> None:
    import aiohttp

    headers = {"Ocp-Apim-Subscription-Key": "wrong", "X-API-Key": "wrong", "Authorization": "Bearer wrong"}
    async with aiohttp.ClientSession() as session:
        status, answer = await call(session, method, sims.bases[provider] + path, json=body, headers=headers)
    assert 401 == status
    assert "error" in answer


@pytest.mark.parametrize(
    ("provider", "path", "body", "extra", "status"),
    [
        ("pixazo", PIXAZO, {"video_url": "https://v/a.mp4", "upscale_factor": 3}, {}, 400),
        ("pixazo", PIXAZO, {"upscale_factor": 2}, {}, 400),
        ("pixazo", PIXAZO, {"video_url": "https://v/a.mp4"}, {"X-Webhook-Mode": "always"}, 400),
        ("pixazo", PIXAZO, {"video_url": "https://v/a.mp4"}, {"X-Webhook-URL": "http://example.com/h"}, 400),
        (
            "apiframe",
            "/v2/videos/upscale",
            {
                "model": "topaz-video-upscale",
                "topazVideoParams": {"video": "https://v/a.mp4", "target_resolution": "8k"},
            },
            {},
            400,
        ),
        (
            "apiframe",
            "/v2/videos/upscale",
            {
                "model": "topaz-video-upscale",
                "topazVideoParams": {"video": "https://v/a.mp4", "target_fps": 25},
            },
            {},
            400,
        ),
        (
            "apiframe",
            "/v2/videos/upscale",
            {"model": "other", "topazVideoParams": {"video": "https://v/a.mp4"}},
            {},
            400,
        ),
        (
            "apiframe",
            "/v2/videos/upscale",
            {"model": "topaz-video-upscale", "topazVideoParams": {"video": "https://v/a.mp4"}},
            {"Idempotency-Key": "k" * 256},
            400,
        ),
        ("oxen", "/api/ai/queue", {"model": "topazlabs-upscale-starlight-2-5-video"}, {}, 422),
        (
            "oxen",
            "/api/ai/queue",
            {
                "model": "topazlabs-upscale-starlight-2-5-video",
                "input_video": "https://v/a",
                "resolution": "720p",
            },
            {},
            422,
        ),
        (
            "oxen",
            "/api/ai/queue",
            {
                "model": "topazlabs-upscale-starlight-2-5-video",
                "input_video": "https://v/a",
                "num_generations": 5,
            },
            {},
            422,
        ),
        (
            "venice",
            "/api/v1/video/queue",
            {"model": "topaz-video-upscale", "video_url": "https://v/a", "resolution": "4k"},
            {},
            400,
        ),
        (
            "venice",
            "/api/v1/video/queue",
            {"model": "topaz-video-upscale", "video_url": "https://v/a", "upscale_factor": 3},
            {},
            400,
        ),
    ],
)
async def test_invalid_parameters_are_refused(
    sims: Cluster, provider: str, path: str, body: Any, extra: dict[str, str], status: int
) -> None:
    import aiohttp

    auth = {
        "pixazo": {"Ocp-Apim-Subscription-Key": KEYS["pixazo"]},
        "apiframe": {"X-API-Key": KEYS["apiframe"]},
    }
    headers = auth.get(provider, {"Authorization": f"Bearer {KEYS[provider]}"}) | extra
    async with aiohttp.ClientSession() as session:
        got, answer = await call(session, "POST", sims.bases[provider] + path, json=body, headers=headers)
    assert status == got
    assert "error" in answer


async def test_apiframe_idempotency_key_returns_the_original_job(sims: Cluster) -> None:
    import aiohttp

    body = {"model": "topaz-video-upscale", "topazVideoParams": {"video": "https://v/a.mp4?seconds=0.1"}}
    headers = {"X-API-Key": KEYS["apiframe"], "Idempotency-Key": "same-key"}
    async with aiohttp.ClientSession() as session:
        first = await call(
            session, "POST", sims.bases["apiframe"] + "/v2/videos/upscale", json=body, headers=headers
        )
        await asyncio.sleep(0.2)
        again = await call(
            session, "POST", sims.bases["apiframe"] + "/v2/videos/upscale", json=body, headers=headers
        )
    assert 202 == first[0] == again[0]
    assert first[1]["jobId"] == again[1]["jobId"]
    assert "COMPLETED" == again[1]["status"], "the original job, no longer QUEUED"


async def test_oxen_streams_keep_alives_and_says_nothing_about_a_cancel(sims: Cluster) -> None:
    import aiohttp

    oxen = sims.oxen
    oxen.heartbeat = 0.1
    auth = {"Authorization": f"Bearer {KEYS['oxen']}"}
    body = {"model": "topazlabs-upscale-starlight-2-5-video", "input_video": "https://v/a.mp4?seconds=0.5"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(sims.bases["oxen"] + "/api/events", headers=auth) as stream,
    ):
        _, made = await call(session, "POST", sims.bases["oxen"] + "/api/ai/queue", json=body, headers=auth)
        _, other = await call(session, "POST", sims.bases["oxen"] + "/api/ai/queue", json=body, headers=auth)
        cancelled = other["generations"][0]["generation_id"]
        await call(session, "DELETE", f"{sims.bases['oxen']}/api/ai/queue/{cancelled}", headers=auth)
        seen = b""
        while b"media_generation_completed" not in seen:
            seen += await asyncio.wait_for(stream.content.readany(), 5)
        await asyncio.sleep(0.8)
        seen += stream.content.read_nowait()
    assert b": keep-alive\n\n" in seen and b"id:" not in seen
    assert made["generations"][0]["generation_id"].encode() in seen
    assert cancelled.encode() not in seen


async def test_venice_answers_the_video_then_complete_deletes_it(sims: Cluster) -> None:
    import aiohttp

    auth = {"Authorization": f"Bearer {KEYS['venice']}"}
    base = sims.bases["venice"]
    async with aiohttp.ClientSession() as session:
        _, queued = await call(
            session,
            "POST",
            base + "/api/v1/video/queue",
            json={"model": "topaz-video-upscale", "video_url": "https://v/a.mp4?seconds=0.2"},
            headers=auth,
        )
        ask = {"model": "topaz-video-upscale", "queue_id": queued["queue_id"]}
        status, early = await call(session, "POST", base + "/api/v1/video/retrieve", json=ask, headers=auth)
        assert (200, "PROCESSING") == (status, early["status"])
        await asyncio.sleep(0.3)
        async with session.post(base + "/api/v1/video/retrieve", json=ask, headers=auth) as r:
            assert ("video/mp4", 256 * 1024) == (r.content_type, len(await r.read()))
        assert (200, {"success": True}) == await call(
            session, "POST", base + "/api/v1/video/complete", json=ask, headers=auth
        )
        status, gone = await call(session, "POST", base + "/api/v1/video/retrieve", json=ask, headers=auth)
    assert (404, "MEDIA_NOT_FOUND") == (status, gone["error"])


async def test_result_urls_expire(sims: Cluster) -> None:
    import aiohttp

    from jobtrail.simulators.base import result_url

    async with aiohttp.ClientSession() as session:
        fresh = await call(session, "GET", result_url(sims.bases["oxen"], "j1", 60))
        stale = await call(session, "GET", result_url(sims.bases["oxen"], "j1", -1))
        forged = await call(session, "GET", result_url(sims.bases["oxen"], "j1", 60).replace("sig=", "sig=0"))
    assert (200, 403, 403) == (fresh[0], stale[0], forged[0])


def test_simulate_on_a_port_in_use_exits_2_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from jobtrail.receiver.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if port > 65532:
            pytest.skip("the kernel gave a port too high for --first-port")
        assert 2 == main(["simulate", "--first-port", str(port)])
    assert "--first-port: cannot listen" in capsys.readouterr().err
