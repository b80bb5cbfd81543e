"""Result downloads through the outbox worker, against a loopback file server: resume,
restart, refresh, SSRF refusals, hostile names, a full disk, the size limit."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from jobtrail.core.model import Delivery, Observation, OutboxEntry, utcnow
from jobtrail.core.settings import Settings
from jobtrail.dispatch import run as dispatch_run
from jobtrail.listeners import refresh
from jobtrail.receiver.serve import store_for
from jobtrail.receiver.views import job_view
from jobtrail.runtime import files
from jobtrail.runtime.health import Health
from jobtrail.store.base import Store
from tests.integration.fake_providers import KEY, Answer, FakeProviders
from tests.integration.file_server import FileServer

VIDEO = bytes(range(256)) * 4096  # 1 MiB


class Rig:
    def __init__(self, files_base: str, providers_base: str, make_settings: Callable[..., Settings]) -> None:
        self.files_base, self.providers_base, self.make_settings = files_base, providers_base, make_settings
        self.stores: list[Store] = []

    async def start(self, **env: str) -> Store:
        self.settings = self.make_settings(
            **{
                "APIFRAME_API_KEY": "",
                "JOBTRAIL_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
                "JOBTRAIL_RETRY_SCHEDULE": "1s,1s,1s",
                "OXEN_API_KEY": KEY,
                "OXEN_BASE_URL": self.providers_base,
                **env,
            }
        )
        store = store_for(self.settings)
        await store.open()
        self.stores.append(store)
        return store

    async def succeed(self, store: Store, job_id: str, url: str, provider: str = "oxen") -> None:
        await store.intake(
            Delivery("sse", provider, utcnow(), {}, b"{}", job_id),
            [Observation(provider, job_id, "succeeded", result_urls=(url,))],
        )

    @contextlib.asynccontextmanager
    async def running(self, store: Store) -> AsyncIterator[Any]:
        """The dispatcher, with the listeners' URL refresh, as the app composes them."""
        async with (
            refresh.refreshing(self.settings, store) as fresh_url,
            dispatch_run.running(self.settings, store, Health(), fresh_url) as worker,
        ):
            yield worker


@pytest.fixture
async def rig(aiohttp_server: Any, make_settings: Callable[..., Settings]) -> AsyncIterator[Rig]:
    server = FileServer()
    providers = FakeProviders()
    files_http = await aiohttp_server(server.app())
    providers_http = await aiohttp_server(providers.app())
    r = Rig(
        str(files_http.make_url("")).rstrip("/"), str(providers_http.make_url("")).rstrip("/"), make_settings
    )
    r.server, r.providers = server, providers
    yield r
    for store in r.stores:
        await store.close()


async def download_of(store: Store, job_id: str, provider: str = "oxen") -> OutboxEntry:
    [entry] = [e for e in await store.outbox_for_job(provider, job_id) if e.item.kind == "download"]
    return entry


async def settled(store: Store, job_id: str, *, attempts: int = 1, timeout: float = 15.0) -> OutboxEntry:
    """The download once it is done or dead, or has made `attempts` attempts."""

    async def wait() -> OutboxEntry:
        while True:
            entry = await download_of(store, job_id)
            if entry.status in ("done", "dead") or entry.attempts >= attempts:
                return entry
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(wait(), timeout)


async def download_events(store: Store, job_id: str) -> list[dict[str, Any]]:
    return [
        dict(e.data, type=e.type) for e in await store.job_events("oxen", job_id) if e.source == "dispatch"
    ]


async def test_a_result_is_downloaded_verified_and_shown_in_the_job_view(rig: Rig) -> None:
    rig.server.files["out.mp4"] = VIDEO
    store = await rig.start()
    await rig.succeed(store, "g1", f"{rig.files_base}/files/out.mp4")
    async with rig.running(store):
        entry = await settled(store, "g1", attempts=99)
    path = rig.settings.data_dir / "downloads" / "oxen" / "g1" / "out.mp4"
    assert ("done", VIDEO) == (entry.status, path.read_bytes())
    job = await store.get_job("oxen", "g1")
    assert job is not None
    [shown] = job_view(job, (await store.outbox_for_jobs([("oxen", "g1")]))[("oxen", "g1")])["downloads"]
    assert {
        "status": "done",
        "path": str(path),
        "bytes": len(VIDEO),
        "sha256": hashlib.sha256(VIDEO).hexdigest(),
    } == {k: shown[k] for k in ("status", "path", "bytes", "sha256")}
    [event] = await download_events(store, "g1")
    assert ("download.completed", 1, 200) == (event["type"], event["attempt"], event["http_status"])


async def test_a_download_cut_mid_stream_resumes_with_range(rig: Rig) -> None:
    rig.server.files["cut.mp4"] = VIDEO
    rig.server.cut_after["cut.mp4"] = 400_000
    store = await rig.start()
    await rig.succeed(store, "g2", f"{rig.files_base}/files/cut.mp4")
    async with rig.running(store):
        entry = await settled(store, "g2", attempts=99)
    path = rig.settings.data_dir / "downloads" / "oxen" / "g2" / "cut.mp4"
    assert ("done", VIDEO) == (entry.status, path.read_bytes())
    first, second = rig.server.ranges("cut.mp4")
    assert first is None and second is not None and second.startswith("bytes=")
    kept = int(second[len("bytes=") : -1])
    assert 0 < kept <= 400_000
    failed, completed = await download_events(store, "g2")
    assert ("download.failed", "download.completed", kept) == (
        failed["type"],
        completed["type"],
        completed["resumed_from"],
    )
    assert hashlib.sha256(VIDEO).hexdigest() == completed["sha256"]


async def test_a_stalled_download_times_out_and_resumes_exactly_where_it_stopped(rig: Rig) -> None:
    rig.server.files["stall.mp4"] = VIDEO
    rig.server.stall_after["stall.mp4"] = 123_456
    store = await rig.start(JOBTRAIL_DOWNLOAD_READ_TIMEOUT="0.3")
    await rig.succeed(store, "g11", f"{rig.files_base}/files/stall.mp4")
    async with rig.running(store):
        entry = await settled(store, "g11", attempts=99)
    path = rig.settings.data_dir / "downloads" / "oxen" / "g11" / "stall.mp4"
    assert ("done", VIDEO) == (entry.status, path.read_bytes())
    assert [None, "bytes=123456-"] == rig.server.ranges("stall.mp4")


async def test_a_server_without_range_support_is_fetched_again_from_the_start(rig: Rig) -> None:
    rig.server.files["whole.mp4"] = VIDEO
    rig.server.cut_after["whole.mp4"] = 300_000
    store = await rig.start()
    await rig.succeed(store, "g3", f"{rig.files_base}/norange/whole.mp4")
    async with rig.running(store):
        entry = await settled(store, "g3", attempts=99)
    path = rig.settings.data_dir / "downloads" / "oxen" / "g3" / "whole.mp4"
    assert ("done", VIDEO) == (entry.status, path.read_bytes())
    assert rig.server.ranges("whole.mp4")[1] is not None, "it asked to resume"
    assert 0 == (await download_events(store, "g3"))[-1]["resumed_from"], "but got the whole file"


async def test_an_expired_url_is_refreshed_from_the_provider(rig: Rig) -> None:
    rig.server.files["fresh.mp4"] = VIDEO
    rig.server.expired.add("stale.mp4")
    fresh = f"{rig.files_base}/files/fresh.mp4"
    rig.providers.script(
        "oxen", "g4", Answer(body={"generation_id": "g4", "status": "succeeded", "result_url": fresh})
    )
    store = await rig.start()
    await rig.succeed(store, "g4", f"{rig.files_base}/files/stale.mp4")
    async with rig.running(store):
        entry = await settled(store, "g4", attempts=99)
    assert ("done", fresh) == (entry.status, entry.item.payload["url"])
    expired, completed = await download_events(store, "g4")
    assert (403, True) == (expired["http_status"], expired["refreshed_url"])
    assert "download.completed" == completed["type"]
    polls = [d for d in await store.deliveries(provider="oxen", job_id="g4") if d.delivery.source == "poll"]
    assert 1 == len(polls), "the status answer is kept like any poll"


async def test_a_redirect_to_loopback_is_refused(rig: Rig) -> None:
    port = rig.files_base.rsplit(":", 1)[1]
    rig.server.redirects["r1.mp4"] = f"https://localhost:{port}/files/secret"
    rig.server.redirects["r2.mp4"] = f"http://127.0.0.2:{port}/files/secret"
    store = await rig.start()
    await rig.succeed(store, "g5", f"{rig.files_base}/files/r1.mp4")
    await rig.succeed(store, "g6", f"{rig.files_base}/files/r2.mp4")
    async with rig.running(store):
        to_name = await settled(store, "g5", attempts=99)
        to_ip = await settled(store, "g6", attempts=99)
    assert ("dead", "dead") == (to_name.status, to_ip.status)
    assert (
        to_name.last_error is not None and "localhost resolves to 127.0.0.1 is loopback" in to_name.last_error
    )
    assert to_ip.last_error is not None and "only https" in to_ip.last_error
    assert not (rig.settings.data_dir / "downloads" / "oxen" / "g5").exists() or not any(
        (rig.settings.data_dir / "downloads" / "oxen" / "g5").iterdir()
    )


async def test_a_url_into_the_private_network_is_refused_without_the_allow_list(rig: Rig) -> None:
    store = await rig.start(JOBTRAIL_DOWNLOAD_ALLOW_HOSTS="")
    await rig.succeed(store, "g7", f"{rig.files_base}/files/out.mp4")
    async with rig.running(store):
        entry = await settled(store, "g7", attempts=99)
    assert "dead" == entry.status and entry.last_error is not None and entry.last_error.startswith("refused")
    assert [] == rig.server.requests


async def test_a_traversal_name_stays_in_the_job_directory(rig: Rig) -> None:
    rig.server.files["../../evil.mp4"] = VIDEO
    store = await rig.start()
    await rig.succeed(store, "g8", f"{rig.files_base}/files/..%2F..%2Fevil.mp4")
    async with rig.running(store):
        entry = await settled(store, "g8", attempts=99)
    job_dir = rig.settings.data_dir / "downloads" / "oxen" / "g8"
    assert "done" == entry.status
    assert [job_dir / "evil.mp4"] == list(job_dir.iterdir())


async def test_a_full_disk_fails_the_attempt_and_nothing_is_presented_as_done(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.server.files["big.mp4"] = VIDEO
    real = files._write
    calls = {"n": 0}

    def write(out: Any, chunks: list[bytes]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(out, chunks)

    monkeypatch.setattr(files, "_write", write)
    store = await rig.start()
    await rig.succeed(store, "g9", f"{rig.files_base}/files/big.mp4")
    path = rig.settings.data_dir / "downloads" / "oxen" / "g9" / "big.mp4"
    async with rig.running(store):
        first = await settled(store, "g9", attempts=1)
        assert ("pending", False) == (first.status, path.exists())
        assert first.last_error is not None and "No space left on device" in first.last_error
        entry = await settled(store, "g9", attempts=99)
    assert ("done", VIDEO) == (entry.status, path.read_bytes())


async def test_a_result_over_the_size_limit_is_refused(rig: Rig) -> None:
    rig.server.files["huge.mp4"] = VIDEO
    store = await rig.start(JOBTRAIL_DOWNLOAD_MAX_BYTES="1000")
    await rig.succeed(store, "g10", f"{rig.files_base}/files/huge.mp4")
    async with rig.running(store):
        entry = await settled(store, "g10", attempts=99)
    assert "dead" == entry.status and entry.last_error is not None and "1000-byte limit" in entry.last_error
    assert not (rig.settings.data_dir / "downloads" / "oxen" / "g10" / "huge.mp4").exists()


async def test_every_disk_call_of_a_saved_stream_runs_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An fsync can take a second on a busy disk: on the loop it would stall every
    request. Seen before: the rename and both fsyncs ran on the loop's thread."""
    loop_thread = threading.get_ident()
    calls: list[tuple[str, bool]] = []

    def watched(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, threading.get_ident() == loop_thread))
            return real(*args, **kwargs)

        return call

    for name in ("fsync", "replace", "open", "mkdir", "unlink"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, watched(name, getattr(os, name)))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * 1000

    dest = tmp_path / "deep" / "er" / "video.mp4"
    saved = await files.save_stream(chunks(), dest, expected_bytes=3000)
    assert 3000 == saved.bytes and dest.read_bytes() == b"x" * 3000
    with pytest.raises(files.SizeError):
        await files.save_stream(chunks(), tmp_path / "other.mp4", max_bytes=10)
    assert not (tmp_path / "other.mp4.part").exists()
    assert 0 == await files.part_size(dest)
    names = {name for name, _ in calls}
    assert {"fsync", "replace", "open", "mkdir", "unlink"} <= names
    assert [] == [name for name, on_loop in calls if on_loop]
