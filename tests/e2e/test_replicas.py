"""Three real `jobtrail serve` processes on one PostgreSQL database (PRODUCT.md, "Scale").

Any replica takes webhooks, every replica shows the same log, each side effect happens
once however many replicas run, the work of a replica killed while holding claims is
finished by the others, and exactly one replica, the leader, holds the Oxen stream and
runs the pollers, replaced within 30 s when it dies.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests import postgres
from tests.e2e.replicas import TOKEN, Cluster, Replica
from tests.integration.fake_providers import KEY, Answer, FakeProviders
from tests.integration.file_server import FileServer

pytestmark = pytest.mark.slow

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
JOBS = 24


class Hooks:
    """The team's endpoint: every signed notification it is sent."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        return app

    async def hook(self, request: web.Request) -> web.Response:
        self.got.append((request.headers["webhook-id"], json.loads(await request.read())))
        return web.Response(status=204)

    def by_job(self) -> dict[tuple[str, str], set[str]]:
        ids: dict[tuple[str, str], set[str]] = {}
        for webhook_id, body in self.got:
            ids.setdefault((body["data"]["id"], body["data"]["status"]), set()).add(webhook_id)
        return ids


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, shutdown_timeout=1)  # stalled downloads: do not wait for them
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 60) -> None:
    async with asyncio.timeout(seconds):  # a guard against a hang, not a speed check
        while not await check():
            await asyncio.sleep(0.1)


@pytest.fixture
async def database() -> AsyncIterator[str]:
    async with postgres.fresh_database() as url:
        yield url


async def post(session: aiohttp.ClientSession, replica: Replica, body: dict[str, Any]) -> int:
    async with session.post(f"{replica.url}/webhooks/pixazo/{TOKEN}", json=body) as answer:
        return answer.status


async def test_replicas_share_one_log_and_do_each_side_effect_once(database: str, tmp_path: Path) -> None:
    files, hooks = FileServer(), Hooks()
    runners = [await serve(files.app()), await serve(hooks.app())]
    file_port, hook_port = runners[0][1], runners[1][1]
    cluster = Cluster(
        database,
        tmp_path,
        env={
            "JOBTRAIL_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
            "JOBTRAIL_NOTIFY_WEBHOOK_URL": f"http://127.0.0.1:{hook_port}/hook",
            "JOBTRAIL_NOTIFY_WEBHOOK_SECRET": SECRET,
            "JOBTRAIL_LEASE_SECONDS": "3",
            "JOBTRAIL_DOWNLOAD_READ_TIMEOUT": "2",  # a survivor's stalled download gives up soon
            "JOBTRAIL_RETRY_SCHEDULE": "1s,1s,1s,1s",
        },
    )
    rand = random.Random(15)
    oracle: dict[str, str] = {}
    callbacks: list[dict[str, Any]] = []
    for n in range(JOBS):
        job = f"topaz-upscale-video-753_{n:04d}"
        files.files[f"{job}.mp4"] = os.urandom(200_000)
        oracle[job] = "failed" if n % 4 == 3 else "succeeded"
        terminal: dict[str, Any] = (
            {"request_id": job, "status": "FAILED", "error": "out of credits"}
            if oracle[job] == "failed"
            else {
                "request_id": job,
                "status": "COMPLETED",
                "output": {
                    "media_url": [f"http://127.0.0.1:{file_port}/files/{job}.mp4"],
                    "media_type": "video",
                },
            }
        )
        callbacks += [{"request_id": job, "status": "PROCESSING"}, terminal] * 3
    rand.shuffle(callbacks)  # every report three times, any order: a late PROCESSING after the end
    try:
        await cluster.start(3)
        async with aiohttp.ClientSession() as session:
            answers = await asyncio.gather(
                *(post(session, rand.choice(cluster.replicas), body) for body in callbacks)
            )
        assert {200} == set(answers)

        async def settled() -> bool:
            for replica in cluster.replicas:
                jobs = (await cluster.get(replica, "/api/jobs?limit=500"))["jobs"]
                if {j["id"]: j["status"] for j in jobs} != oracle:
                    return False
            done = await cluster.get(cluster.replicas[0], "/api/outbox?status=done&limit=500")
            return len(done["items"]) == JOBS + sum(1 for s in oracle.values() if s == "succeeded")

        await eventually(settled)
        timelines = []
        for replica in cluster.replicas:
            timelines.append(
                [
                    [
                        (e["seq"], e["type"], e["source"])
                        for e in (await cluster.get(replica, f"/api/jobs/pixazo/{job}/events"))["events"]
                    ]
                    for job in sorted(oracle)
                ]
            )
        assert timelines[0] == timelines[1] == timelines[2], "one log, seen alike by every replica"
        fetched = Counter(path for path, _ in files.requests)
        assert {1} == set(fetched.values()) and len(fetched) == sum(
            1 for s in oracle.values() if s == "succeeded"
        )
        assert JOBS == len(hooks.got), "each notification sent once"
        assert all(len(ids) == 1 for ids in hooks.by_job().values())

        # A replica dies holding claims: its downloads stall, and it is killed mid-way.
        late = [f"late-{n}" for n in range(4)]
        for job in late:
            files.files[f"{job}.mp4"] = os.urandom(300_000)
            files.stall_after[f"{job}.mp4"] = 1000
        async with aiohttp.ClientSession() as session:
            for job in late:
                url = f"http://127.0.0.1:{file_port}/files/{job}.mp4"
                body = {"request_id": job, "status": "COMPLETED", "output": {"media_url": [url]}}
                assert 200 == await post(session, rand.choice(cluster.replicas), body)

        async def held() -> bool:
            return bool(await lease_holders(database))

        await eventually(held)
        holders = await lease_holders(database)
        victim = next(r for r in cluster.replicas if any(str(r.process.pid) in o.split(":") for o in holders))
        victim_items = {
            item
            for owner, items in holders.items()
            if str(victim.process.pid) in owner.split(":")
            for item in items
        }
        victim.kill()

        async def finished() -> bool:
            items = (await cluster.get(cluster.alive[0], "/api/outbox?sink=download&status=done&limit=500"))[
                "items"
            ]
            notified = {body["data"]["id"] for _, body in hooks.got}
            return {i["job_id"] for i in items} >= set(late) and notified >= set(late)

        assert victim_items, "the killed replica held claims"

        await eventually(finished)
        done = (await cluster.get(cluster.alive[0], "/api/outbox?sink=download&status=done&limit=500"))[
            "items"
        ]
        assert victim_items <= {i["id"] for i in done}, "the others finished the killed replica's work"
        assert all(len(ids) == 1 for ids in hooks.by_job().values()), "a repeat carries the same webhook-id"
        for job in late:
            [item] = [
                i for i in (await cluster.get(cluster.alive[0], f"/api/jobs/pixazo/{job}"))["downloads"]
            ]
            assert ("done", 300_000) == (item["status"], item["bytes"])
    finally:
        await cluster.stop()
        for runner, _ in runners:
            await runner.cleanup()


async def lease_holders(database: str) -> dict[str, set[int]]:
    """The downloads leased now, by owner (its token holds its pid)."""
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(
            "SELECT lease_owner, id FROM outbox WHERE lease_owner IS NOT NULL AND kind = 'download'"
        )
    finally:
        await conn.close()
    held: dict[str, set[int]] = {}
    for owner, item in rows:
        held.setdefault(owner, set()).add(item)
    return held


async def test_one_leader_holds_the_oxen_stream_and_another_takes_over_with_the_gap_filled(
    database: str, tmp_path: Path
) -> None:
    fake = FakeProviders()
    runner, port = await serve(fake.app())
    cluster = Cluster(
        database,
        tmp_path,
        env={
            "OXEN_API_KEY": KEY,
            "OXEN_BASE_URL": f"http://127.0.0.1:{port}",
            "JOBTRAIL_POLL_MIN_INTERVAL": "60",
        },
    )
    jobs = [f"gen-{n}" for n in range(3)]
    for job in jobs:
        fake.script("oxen", job, Answer(body={"generation_id": job, "status": "processing"}))
    try:
        await cluster.start(3)
        async with aiohttp.ClientSession() as session:
            for job in jobs:
                async with session.post(
                    f"{cluster.replicas[1].url}/api/jobs", json={"provider": "oxen", "id": job}
                ) as answer:
                    assert 201 == answer.status

        async def leading() -> list[Replica]:
            roles = [(r, (await cluster.get(r, "/readyz"))["role"]) for r in cluster.alive]
            return [r for r, role in roles if role == "leader"]

        await eventually(lambda: _one(leading))
        await eventually(lambda: _true(fake.stream_connections >= 1))
        await asyncio.sleep(2)  # time for a second connection, if there were to be one
        assert 1 == fake.stream_connections, "one stream for three replicas"
        [leader] = await leading()
        assert {"postgres"} == {(await cluster.get(r, "/readyz"))["store"]["kind"] for r in cluster.alive}
        for job in jobs:  # these finish while nobody holds the stream: only a poll can tell
            fake.script(
                "oxen",
                job,
                Answer(
                    body={
                        "generation_id": job,
                        "status": "succeeded",
                        "result_url": f"https://cdn.test/{job}.mp4",
                    }
                ),
            )
        killed_at = time.monotonic()
        leader.kill()
        await eventually(lambda: _true(fake.stream_connections >= 2), seconds=60)
        took = time.monotonic() - killed_at
        assert took < 30, f"a new leader took the stream {took:.1f} s after the old one died"
        [successor] = await leading()
        assert successor is not leader

        async def filled() -> bool:
            found = [(await cluster.get(successor, f"/api/jobs/oxen/{job}"))["status"] for job in jobs]
            return found == ["succeeded"] * len(jobs)

        await eventually(filled)
        await asyncio.sleep(1)
        assert 2 == fake.stream_connections, "still one stream after the takeover"
    finally:
        await cluster.stop()
        await runner.cleanup()


async def _one(found: Callable[[], Awaitable[list[Replica]]]) -> bool:
    return len(await found()) == 1


async def _true(value: bool) -> bool:
    return value
