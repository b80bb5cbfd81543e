"""`POST /api/jobs/submit` against the simulators: checked parameters, a wired push
channel, the job tracked; bad input and refusals answered clearly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from jobtrail.core.model import Delivery, IntakeResult, Observation
from jobtrail.core.settings import Settings
from jobtrail.receiver import submit
from jobtrail.receiver.app import create_app
from jobtrail.receiver.keys import SETTINGS
from jobtrail.receiver.serve import store_for
from jobtrail.simulators.cluster import Cluster
from jobtrail.store.base import Store, StoreUnavailable
from tests.conftest import WEBHOOK_TOKEN


@pytest.fixture
async def api(aiohttp_client: Any, make_settings: Callable[..., Settings]) -> AsyncIterator[Any]:
    cluster = Cluster.build()
    await cluster.start()
    env = {**cluster.environment(), "JOBTRAIL_PUBLIC_URL": "http://127.0.0.1:9"}
    env["VENICE_API_KEY"] = "wrong-venice-key-000"
    settings = make_settings(**env)
    store = store_for(settings)
    await store.open()
    client = await aiohttp_client(create_app(settings, store))
    client.cluster = cluster
    client.store = store
    yield client
    await store.close()
    await cluster.stop()


async def test_a_submitted_job_is_tracked_with_its_push_channel_wired(api: Any) -> None:
    response = await api.post(
        "/api/jobs/submit",
        json={"provider": "pixazo", "video": "https://v/a.mp4", "upscale_factor": 4, "webhook_mode": "sync"},
    )
    assert 201 == response.status
    job = await response.json()
    assert ("pixazo", "queued") == (job["provider"], job["status"])
    assert {"video": "https://v/a.mp4", "upscale_factor": 4, "webhook_mode": "sync"} == job["params"][
        "submitted"
    ]
    sim = api.cluster.pixazo.jobs[job["id"]]
    assert "sync" == sim.params["mode"]
    events = await (await api.get(f"/api/jobs/pixazo/{job['id']}/events")).json()
    assert ["job.tracked"] == [e["type"] for e in events["events"]]
    assert WEBHOOK_TOKEN not in await response.text()


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"provider": "pixazo", "video": "https://v/a.mp4", "upscale_factor": 3}, 400, "invalid_parameter"),
        ({"provider": "apiframe", "video": "https://v/a.mp4", "resolution": "8k"}, 400, "invalid_parameter"),
        ({"provider": "runway", "video": "https://v/a.mp4"}, 400, "invalid_parameter"),
        ({"provider": "oxen"}, 400, "invalid_parameter"),
        ({"provider": "venice", "video": "https://v/a.mp4", "prompt": "x"}, 400, "invalid_parameter"),
        ({"provider": "venice", "video": "https://v/a.mp4"}, 502, "provider_refused"),
    ],
)
async def test_bad_submissions_are_refused_clearly(
    api: Any, body: dict[str, Any], status: int, error: str
) -> None:
    response = await api.post("/api/jobs/submit", json=body)
    assert (status, error) == (response.status, (await response.json())["error"])


async def test_oxen_waits_for_the_stream_which_is_not_running_here(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobtrail.receiver import submit

    monkeypatch.setattr(submit, "STREAM_WAIT", 0.2)
    response = await api.post("/api/jobs/submit", json={"provider": "oxen", "video": "https://v/a.mp4"})
    assert (503, "stream_not_connected") == (response.status, (await response.json())["error"])
    assert {} == api.cluster.oxen.jobs, "nothing was submitted while the stream was down"


async def test_a_non_json_or_huge_body_is_refused(api: Any) -> None:
    assert (
        415 == (await api.post("/api/jobs/submit", data=b"x", headers={"Content-Type": "text/plain"})).status
    )
    big = b'{"provider": "' + b"x" * 70_000 + b'"}'
    assert (
        413
        == (await api.post("/api/jobs/submit", data=big, headers={"Content-Type": "application/json"})).status
    )
    assert (
        400
        == (
            await api.post("/api/jobs/submit", data=b"{nope", headers={"Content-Type": "application/json"})
        ).status
    )


async def test_the_cli_submits_through_a_running_jobtrail(
    api: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from jobtrail.receiver.cli import main

    url = str(api.make_url("")).rstrip("/")
    code = await asyncio.to_thread(
        main, ["submit", "apiframe", "--video", "https://v/a.mp4", "--resolution", "4k", "--api", url]
    )
    out = capsys.readouterr().out
    assert 0 == code, out
    job_id = out.split()[1].rstrip(":")
    assert job_id in api.cluster.apiframe.jobs
    assert "4k" == api.cluster.apiframe.jobs[job_id].params["topazVideoParams"]["target_resolution"]


def test_the_cli_checks_parameters_before_sending_anything(capsys: pytest.CaptureFixture[str]) -> None:
    from jobtrail.receiver.cli import main

    assert 2 == main(
        ["submit", "apiframe", "--video", "https://v/a.mp4", "--fps", "25", "--api", "http://127.0.0.1:9"]
    )
    assert "fps must be 24, 30, 60" in capsys.readouterr().err
    assert 1 == main(["submit", "venice", "--video", "https://v/a.mp4", "--api", "http://127.0.0.1:9"])
    assert "cannot reach jobtrail" in capsys.readouterr().err


class _Unavailable:
    """The store, but its first `failures` intakes raise StoreUnavailable (a writer that
    is restarting, a full queue)."""

    def __init__(self, store: Store, failures: int) -> None:
        self._store, self.failures, self.tries = store, failures, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def intake(self, delivery: Delivery, observations: Sequence[Observation]) -> IntakeResult:
        self.tries += 1
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the SQLite writer is restarting", retry_after=0.01)
        return await self._store.intake(delivery, observations)


async def test_a_job_the_provider_took_is_recorded_once_the_store_is_back(
    api: Any, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the provider took (and charged) the job, the intake failed once, and
    the job was never tracked: nothing would ever poll it or fetch its result."""
    monkeypatch.setattr(submit, "RECORD_ATTEMPTS", 3)
    flaky = _Unavailable(api.store, failures=2)
    client = await aiohttp_client(create_app(api.app[SETTINGS], flaky))  # type: ignore[arg-type]
    response = await client.post("/api/jobs/submit", json={"provider": "pixazo", "video": "https://v/a.mp4"})
    assert 201 == response.status
    job_id = (await response.json())["id"]
    assert 3 == flaky.tries
    tracked = await api.store.get_job("pixazo", job_id)
    assert tracked is not None and job_id in api.cluster.pixazo.jobs


async def test_a_job_that_cannot_be_recorded_is_named_in_the_answer(
    api: Any, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submit, "RECORD_ATTEMPTS", 2)
    flaky = _Unavailable(api.store, failures=100)
    client = await aiohttp_client(create_app(api.app[SETTINGS], flaky))  # type: ignore[arg-type]
    with capture_logs() as logs:
        response = await client.post(
            "/api/jobs/submit", json={"provider": "pixazo", "video": "https://v/a.mp4"}
        )
    body = await response.json()
    assert (503, "job_not_recorded") == (response.status, body["error"])
    [job_id] = list(api.cluster.pixazo.jobs)
    assert job_id in body["message"] and "POST /api/jobs" in body["message"]
    [logged] = [e for e in logs if e["event"] == "submitted_job_not_recorded"]
    assert ("pixazo", job_id, "error") == (logged["provider"], logged["job_id"], logged["log_level"])


async def test_a_provider_without_a_key_at_the_server_is_named_where_to_set_it(
    make_client: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: `submit` said "set OXEN_API_KEY" while the key was set in the CLI's shell;
    the server is where it must be set."""
    import asyncio

    from jobtrail.receiver.cli import main

    client = await make_client()  # no Oxen key at this server
    response = await client.post("/api/jobs/submit", json={"provider": "oxen", "video": "https://v/a.mp4"})
    said = await response.json()
    assert (409, "provider_not_configured") == (response.status, said["error"])
    assert "OXEN_API_KEY" in said["message"] and "jobtrail serve" in said["message"]
    monkeypatch.setenv("OXEN_API_KEY", "a-key-only-this-shell-has")
    url = str(client.make_url("")).rstrip("/")
    code = await asyncio.to_thread(main, ["submit", "oxen", "--video", "https://v/a.mp4", "--api", url])
    err = capsys.readouterr().err
    assert 1 == code
    assert "409" in err and "OXEN_API_KEY is set in this shell, but the server" in err
