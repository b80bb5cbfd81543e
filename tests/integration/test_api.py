"""The read/write API and the event stream, over a real socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from jobtrail.core.model import utcnow
from jobtrail.receiver.keys import STORE
from jobtrail.store.base import Polls
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN

PIXAZO = f"/webhooks/pixazo/{WEBHOOK_TOKEN}"
JSON = {"Content-Type": "application/json"}
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


async def callback(client: TestClient[Any, Any], job: str, status: str, **extra: Any) -> None:
    body = json.dumps({"request_id": job, "status": status, **extra})
    assert 200 == (await client.post(PIXAZO, data=body, headers=JSON)).status


async def test_a_job_shows_state_results_and_downloads(client: TestClient[Any, Any]) -> None:
    await callback(client, "p1", "PROCESSING")
    await callback(client, "p1", "COMPLETED", output={"media_url": ["https://cdn/p1.mp4"]})
    job = await (await client.get("/api/jobs/pixazo/p1")).json()
    assert ("succeeded", 100, ["https://cdn/p1.mp4"]) == (job["status"], job["progress"], job["result_urls"])
    assert [
        {
            "url": "https://cdn/p1.mp4",
            "status": "pending",
            "path": None,
            "bytes": None,
            "sha256": None,
            "error": None,
        }
    ] == job["downloads"]
    for field in ("provider", "id", "error", "created_at", "updated_at", "notifications"):
        assert field in job
    assert job["polls"] is None, "never polled"


async def test_a_job_on_its_own_shows_how_often_it_was_polled(client: TestClient[Any, Any]) -> None:
    await callback(client, "p1", "PROCESSING")
    at = utcnow()
    await client.app[STORE].record_polls([Polls("pixazo", "p1", 7, at, "0123456789abcdef")])
    job = await (await client.get("/api/jobs/pixazo/p1")).json()
    assert {"count": 7, "last_at": at.isoformat(), "last_digest": "0123456789abcdef"} == job["polls"]
    listed = (await (await client.get("/api/jobs")).json())["jobs"]
    assert "polls" not in listed[0], "a listing stays as it was: the count is read per job"


async def test_a_job_timeline_lists_its_events_in_order(client: TestClient[Any, Any]) -> None:
    await callback(client, "p1", "QUEUED")
    await callback(client, "p1", "PROCESSING")
    await callback(client, "p1", "ERROR", error="GPU fell over")
    events = (await (await client.get("/api/jobs/pixazo/p1/events")).json())["events"]
    assert ["job.queued", "job.processing", "job.failed"] == [e["type"] for e in events]
    assert {"seq", "provider", "job_id", "type", "source", "at", "data", "effect"} == set(events[0])
    assert "GPU fell over" == events[2]["data"]["error"]
    later = await (await client.get(f"/api/jobs/pixazo/p1/events?after={events[0]['seq']}")).json()
    assert 2 == len(later["events"])


async def test_unknown_jobs_and_providers_are_clear_errors(client: TestClient[Any, Any]) -> None:
    missing = await client.get("/api/jobs/pixazo/nope")
    assert (404, "job_not_found") == (missing.status, (await missing.json())["error"])
    assert 404 == (await client.get("/api/jobs/pixazo/nope/events")).status
    assert 400 == (await client.get("/api/jobs/runway/x")).status


async def test_listing_filters_and_paginates(client: TestClient[Any, Any]) -> None:
    for i in range(5):
        await callback(client, f"p{i}", "COMPLETED" if i % 2 else "PROCESSING")
    page = await (await client.get("/api/jobs?limit=2")).json()
    assert ["p4", "p3"] == [j["id"] for j in page["jobs"]]
    rest = await (await client.get(f"/api/jobs?limit=10&cursor={page['next_cursor']}")).json()
    assert (["p2", "p1", "p0"], None) == ([j["id"] for j in rest["jobs"]], rest["next_cursor"])
    done = await (await client.get("/api/jobs?status=succeeded&provider=pixazo")).json()
    assert ["p3", "p1"] == [j["id"] for j in done["jobs"]]


@pytest.mark.parametrize(
    "query",
    ["status=done", "provider=runway", "limit=-1", "limit=abc", "limit=100000", "cursor=zzz"],
)
async def test_bad_list_parameters_are_400(client: TestClient[Any, Any], query: str) -> None:
    response = await client.get(f"/api/jobs?{query}")
    assert 400 == response.status
    assert {"error", "message"} == set(await response.json())


async def test_tracking_a_job_is_idempotent(make_client: Any) -> None:
    client = await make_client(VENICE_API_KEY="venice-key-0123456789")
    first = await client.post("/api/jobs", json={"provider": "venice", "id": "q-1"})
    again = await client.post("/api/jobs", json={"provider": "venice", "id": "q-1", "model": "other"})
    assert (201, 200) == (first.status, again.status)
    job = await first.json()
    assert ("queued", {"model": "topaz-video-upscale"}) == (job["status"], job["params"])
    assert {"model": "topaz-video-upscale"} == (await again.json())["params"]
    events = (await (await client.get("/api/jobs/venice/q-1/events")).json())["events"]
    assert [("job.tracked", "api")] == [(e["type"], e["source"]) for e in events]


async def test_tracking_a_job_already_known_from_webhooks_keeps_its_state(
    client: TestClient[Any, Any],
) -> None:
    await callback(client, "p1", "PROCESSING")
    response = await client.post("/api/jobs", json={"provider": "pixazo", "id": "p1"})
    assert (200, "processing") == (response.status, (await response.json())["status"])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"provider": "runway", "id": "x"}, 400),
        ({"provider": "venice"}, 400),
        ({"provider": "venice", "id": ""}, 400),
        ({"provider": "venice", "id": "a" * 1000}, 400),
        ({"provider": "venice", "id": "x", "model": 5}, 400),
        ({"provider": ["venice"], "id": "x"}, 400),
    ],
)
async def test_bad_track_requests_are_refused(client: TestClient[Any, Any], body: Any, status: int) -> None:
    response = await client.post("/api/jobs", json=body)
    assert status == response.status
    assert [] == (await (await client.get("/api/jobs")).json())["jobs"]


async def test_track_needs_json(client: TestClient[Any, Any]) -> None:
    assert 415 == (await client.post("/api/jobs", data="provider=venice")).status
    assert 400 == (await client.post("/api/jobs", data="{", headers=JSON)).status


async def test_a_configured_api_token_guards_every_api_route(make_client: Any) -> None:
    client = await make_client(JOBTRAIL_API_TOKEN=API_TOKEN)
    for path in ("/api/jobs", "/api/jobs/pixazo/x", "/api/events"):
        response = await client.get(path)
        assert 401 == response.status, path
        assert "unauthorized" == (await response.json())["error"]
    wrong = await client.get("/api/jobs", headers={"Authorization": "Bearer nope"})
    assert 401 == wrong.status
    assert 200 == (await client.get("/api/jobs", headers=AUTH)).status
    assert 401 == (await client.post("/api/jobs", json={"provider": "venice", "id": "q"})).status
    assert 200 == (await client.get("/healthz")).status


async def test_health_and_readiness(client: TestClient[Any, Any]) -> None:
    assert {"status": "alive"} == await (await client.get("/healthz")).json()
    ready = await client.get("/readyz")
    assert (200, "ready") == (ready.status, (await ready.json())["status"])


async def test_metrics_count_deliveries(client: TestClient[Any, Any]) -> None:
    await callback(client, "p1", "PROCESSING")
    await callback(client, "p1", "PROCESSING")
    text = await (await client.get("/metrics")).text()
    assert 'jobtrail_deliveries_total{provider="pixazo",source="webhook",verdict="accepted"} 1' in text
    assert 'jobtrail_deliveries_total{provider="pixazo",source="webhook",verdict="duplicate"} 1' in text


async def read_events(response: Any, count: int) -> list[tuple[str, str, dict[str, Any]]]:
    found: list[tuple[str, str, dict[str, Any]]] = []
    block: dict[str, str] = {}
    while len(found) < count:
        line = (await asyncio.wait_for(response.content.readline(), 5)).decode().rstrip("\n")
        if line == "":
            if "data" in block:
                found.append((block["id"], block["event"], json.loads(block["data"])))
            block = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            block[name] = value
    return found


async def test_the_event_stream_delivers_live_and_resumes(client: TestClient[Any, Any]) -> None:
    await callback(client, "p1", "QUEUED")
    response = await client.get("/api/events")
    assert "text/event-stream" == response.headers["Content-Type"]
    [(first_id, kind, data)] = await read_events(response, 1)
    assert ("1", "job.queued", "p1") == (first_id, kind, data["job_id"])
    await callback(client, "p1", "PROCESSING")
    [(second_id, kind, _)] = await read_events(response, 1)
    assert ("2", "job.processing") == (second_id, kind)
    response.close()
    await callback(client, "p1", "COMPLETED")
    resumed = await client.get("/api/events", headers={"Last-Event-ID": "2"})
    [(third_id, kind, _)] = await read_events(resumed, 1)
    assert ("3", "job.succeeded") == (third_id, kind)
    resumed.close()


async def test_a_bad_last_event_id_is_400(client: TestClient[Any, Any]) -> None:
    assert 400 == (await client.get("/api/events", headers={"Last-Event-ID": "abc"})).status


async def test_tracking_for_a_provider_without_a_key_is_409_unless_asked_to_wait(
    client: TestClient[Any, Any],
) -> None:
    """Regression: it answered 201 `queued` and the job was never polled."""
    refused = await client.post("/api/jobs", json={"provider": "venice", "id": "v-nokey"})
    said = await refused.json()
    assert (409, "provider_not_configured") == (refused.status, said["error"])
    assert "VENICE_API_KEY" in said["message"] and "wait_for_key" in said["message"]
    assert [] == (await (await client.get("/api/jobs")).json())["jobs"], "nothing tracked"
    for hostile in ("yes", 1, None, [True], {"x": 1}):
        bad = await client.post(
            "/api/jobs", json={"provider": "venice", "id": "v-nokey", "wait_for_key": hostile}
        )
        assert (400, "invalid_payload") == (bad.status, (await bad.json())["error"])
    waiting = await client.post(
        "/api/jobs", json={"provider": "venice", "id": "v-nokey", "wait_for_key": True}
    )
    assert (201, "queued") == (waiting.status, (await waiting.json())["status"])
    again = await client.post("/api/jobs", json={"provider": "venice", "id": "v-nokey"})
    assert 200 == again.status, "a job already tracked is answered as it is"


async def test_the_cli_tracks_through_a_running_server(
    make_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobtrail.receiver.cli import main

    client = await make_client()  # the Apiframe key is set at this server, not Venice's
    url = str(client.make_url("")).rstrip("/")
    code = await asyncio.to_thread(main, ["track", "apiframe", "a-77", "--api", url])
    assert (0, "apiframe a-77: queued") == (code, capsys.readouterr().out.splitlines()[-1].split(" (")[0])
    code = await asyncio.to_thread(main, ["track", "venice", "v-77", "--api", url])
    assert 1 == code and "VENICE_API_KEY" in capsys.readouterr().err
    code = await asyncio.to_thread(main, ["track", "venice", "v-77", "--wait-for-key", "--api", url])
    assert 0 == code, capsys.readouterr().err
    assert {"a-77", "v-77"} == {j["id"] for j in (await (await client.get("/api/jobs")).json())["jobs"]}
    with pytest.raises(SystemExit) as refused:
        main(["track", "runway", "x", "--api", url])
    assert 2 == refused.value.code


@pytest.mark.parametrize(
    ("path", "error", "named"),
    [
        ("/api/jobs?provder=venice", "unknown_parameter", "'provder'"),  # a typo: was ignored
        ("/api/jobs?limit=1&limit=2", "bad_parameter", "limit is given more than once"),
        ("/api/jobs?limit=0", "bad_parameter", "limit must be a whole number from 1 to 500"),
        ("/api/jobs/pixazo/p1/events?limit=0", "bad_parameter", "from 1 to 10000"),
        ("/api/jobs/pixazo/p1/events?since=2020-01-01", "unknown_parameter", "'since'"),
        ("/api/outbox?sink=bogus", "bad_parameter", "sink must be one of download, slack, webhook, email"),
        ("/api/outbox?limit=0", "bad_parameter", "limit must be a whole number from 1 to 500"),
        (
            "/api/outbox?state=dead",
            "unknown_parameter",
            "this route takes: limit, since, sink, status, until",
        ),
        ("/api/events?from=3", "unknown_parameter", "'from'"),
        ("/api/jobs?" + "x" * 5000 + "=1", "unknown_parameter", "'" + "x" * 64 + "'"),
    ],
)
async def test_unknown_repeated_and_out_of_range_parameters_are_400_naming_them(
    client: TestClient[Any, Any], path: str, error: str, named: str
) -> None:
    """Regression: `?sink=bogus` answered 200 with an empty list, `limit=0` one item, and
    unknown parameters were ignored (so a typo answered with everything)."""
    await callback(client, "p1", "PROCESSING")
    reply = await client.get(path)
    said = await reply.json()
    assert (400, error) == (reply.status, said["error"]), said
    assert named in said["message"]
    assert "x" * 65 not in said["message"], "a long name is cut"


@pytest.mark.parametrize("sink", ["bogus", 7, ["slack"]])
async def test_bulk_replay_refuses_an_unknown_sink(client: TestClient[Any, Any], sink: Any) -> None:
    reply = await client.post("/api/outbox/replay", json={"sink": sink})
    assert (400, "bad_parameter") == (reply.status, (await reply.json())["error"])


async def test_the_job_list_shows_each_jobs_downloads_and_notifications(
    client: TestClient[Any, Any],
) -> None:
    """Regression: the list answered `"downloads": [], "notifications": []` for jobs that
    had them; it now says what the job route says."""
    await callback(client, "p1", "COMPLETED", output={"media_url": ["https://cdn/p1.mp4"]})
    await callback(client, "p2", "PROCESSING")
    listed = {j["id"]: j for j in (await (await client.get("/api/jobs")).json())["jobs"]}
    for job_id in ("p1", "p2"):
        one = await (await client.get(f"/api/jobs/pixazo/{job_id}")).json()
        assert (one["downloads"], one["notifications"]) == (
            listed[job_id]["downloads"],
            listed[job_id]["notifications"],
        )
    assert ["https://cdn/p1.mp4"] == [d["url"] for d in listed["p1"]["downloads"]]


async def test_an_outbox_item_can_be_retried_now(client: TestClient[Any, Any]) -> None:
    """Regression: only dead items could be run again, and a pending one waits out its
    schedule (about 27 hours in all by default)."""
    await callback(client, "p1", "COMPLETED", output={"media_url": ["https://cdn/p1.mp4"]})
    [item] = (await (await client.get("/api/outbox?status=pending")).json())["items"]
    reply = await client.post(f"/api/outbox/{item['id']}/retry")
    said = await reply.json()
    assert (200, 1, "download.retried") == (reply.status, said["retried"], said["event"]["type"])
    events = (await (await client.get("/api/jobs/pixazo/p1/events")).json())["events"]
    assert "download.retried" == events[-1]["type"], "the timeline says it"
    for bad, status in (("999999", 404), ("abc", 404), ("-1", 404), ("9" * 30, 404)):
        refused = await client.post(f"/api/outbox/{bad}/retry")
        assert (status, {"error", "message"}) == (refused.status, set(await refused.json()))


async def test_jobs_are_found_by_part_of_the_id_time_and_conflict(client: TestClient[Any, Any]) -> None:
    await callback(client, "clip-1", "COMPLETED", output={"media_url": ["https://cdn/1.mp4"]})
    await callback(client, "clip-1", "ERROR", error="late failure")
    await callback(client, "other-2", "PROCESSING")
    found = await (await client.get("/api/jobs?q=clip")).json()
    assert ["clip-1"] == [j["id"] for j in found["jobs"]]
    assert ["failed", "succeeded"] == found["jobs"][0]["conflict"]
    torn = await (await client.get("/api/jobs?conflict=true")).json()
    assert ["clip-1"] == [j["id"] for j in torn["jobs"]]
    calm = await (await client.get("/api/jobs?conflict=0")).json()
    assert ["other-2"] == [j["id"] for j in calm["jobs"]]
    later = await (await client.get("/api/jobs?since=2999-01-01T00:00:00Z")).json()
    assert [] == later["jobs"]
    earlier = await (await client.get("/api/jobs?until=2999-01-01&since=2000-01-01T00:00:00%2B02:00")).json()
    assert 2 == len(earlier["jobs"])


@pytest.mark.parametrize(
    "query",
    [
        "conflict=yes",
        "conflict=",
        "q=",
        "q=" + "x" * 129,
        "q=%00",
        "since=yesterday",
        "until=9999-12-31T23:59:59-01:00",
    ],
)
async def test_bad_job_filters_are_named(client: TestClient[Any, Any], query: str) -> None:
    answer = await client.get(f"/api/jobs?{query}")
    assert 400 == answer.status
    assert query.split("=")[0] in (await answer.json())["message"]


async def test_a_timeline_marks_late_reports_and_lists_duplicates(client: TestClient[Any, Any]) -> None:
    await callback(client, "p1", "PROCESSING")
    await callback(client, "p1", "COMPLETED", output={"media_url": ["https://cdn/p1.mp4"]})
    await callback(client, "p1", "COMPLETED", output={"media_url": ["https://cdn/p1.mp4"]})  # redelivered
    await callback(client, "p1", "QUEUED")  # late
    timeline = await (await client.get("/api/jobs/pixazo/p1/events")).json()
    marks = [(e["type"], e["effect"]["kind"]) for e in timeline["events"]]
    assert [("job.processing", "changed"), ("job.succeeded", "changed"), ("job.queued", "ignored")] == marks
    assert "late: the job was already succeeded" == timeline["events"][2]["effect"]["note"]
    [duplicate] = timeline["duplicates"]
    assert ("duplicate", "webhook", "p1") == (duplicate["verdict"], duplicate["source"], duplicate["job_id"])
    middle = timeline["events"][1]["seq"]
    after = await (await client.get(f"/api/jobs/pixazo/p1/events?after={middle}")).json()
    assert [("job.queued", "ignored")] == [(e["type"], e["effect"]["kind"]) for e in after["events"]], (
        "an effect read from the middle is still judged from the job's first event"
    )
