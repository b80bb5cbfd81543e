"""Status requests and answers of every provider (PROVIDERS.md shapes, odd variants,
error statuses), read into replies by the pure code the pollers use."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from jobtrail.core.model import Job, Status
from jobtrail.core.settings import ProviderSettings
from jobtrail.providers import oxen, replies, venice
from jobtrail.providers.polling import SPECS
from jobtrail.providers.replies import Missing, Observed, Refused, Throttled, Unavailable, Unreadable

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def job(provider: str, job_id: str = "job-1", **params: str) -> Job:
    return Job(provider=provider, id=job_id, created_at=NOW, updated_at=NOW, params=params)


def read(
    provider: str, status: int, body: object, headers: dict[str, str] | None = None, **params: str
) -> object:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return SPECS[provider].read(job(provider, **params), status, headers or {}, raw, NOW)


def observed(reply: object) -> object:
    assert isinstance(reply, Observed), reply
    return reply.observation


@pytest.mark.parametrize(
    ("provider", "method", "url", "header"),
    [
        ("pixazo", "GET", "https://p.test/v2/requests/status/job%2F1%20x", "Ocp-Apim-Subscription-Key"),
        ("apiframe", "GET", "https://p.test/v2/jobs/job%2F1%20x", "X-API-Key"),
        ("oxen", "GET", "https://p.test/api/ai/queue/job%2F1%20x", "Authorization"),
        ("venice", "POST", "https://p.test/api/v1/video/retrieve", "Authorization"),
    ],
)
def test_status_requests_use_each_providers_route_and_auth(
    provider: str, method: str, url: str, header: str
) -> None:
    """Ids are quoted into one path segment; the key goes in the provider's own header."""
    call = SPECS[provider].status_call(
        ProviderSettings(provider, "KEY", "https://p.test"), job(provider, "job/1 x")
    )
    assert (method, url) == (call.method, call.url)
    assert "KEY" in call.headers[header]


def test_venice_retrieve_sends_the_model_and_queue_id() -> None:
    call = venice.retrieve_call(
        ProviderSettings("venice", "K", "https://v.test"), job("venice", "q-1", model="m-2")
    )
    assert {"model": "m-2", "queue_id": "q-1"} == call.json
    complete = venice.complete_call(ProviderSettings("venice", "K", "https://v.test"), job("venice", "q-1"))
    assert ("https://v.test/api/v1/video/complete", {"model": "topaz-video-upscale", "queue_id": "q-1"}) == (
        complete.url,
        complete.json,
    )


def test_oxen_generation_documents() -> None:
    done = observed(
        read(
            "oxen",
            200,
            {
                "generation_id": "job-1",
                "model_name": "topazlabs-upscale-starlight-2-5-video",
                "media_type": "video",
                "status": "succeeded",
                "result_url": "https://cdn.oxen.test/r.mp4?sig=1",
                "error_message": None,
                "enqueued_at": 1779450000,
                "started_at": 1779450010,
                "completed_at": 1779450100,
            },
        )
    )
    assert (Status.SUCCEEDED, ("https://cdn.oxen.test/r.mp4?sig=1",)) == (done.status, done.result_urls)
    assert datetime.fromtimestamp(1779450100, UTC) == done.provider_at
    failed = observed(
        read("oxen", 200, {"generation_id": "job-1", "status": "failed", "error_message": "bad input"})
    )
    assert (Status.FAILED, "bad input") == (failed.status, failed.error)
    cancelled = observed(read("oxen", 200, {"generation_id": "job-1", "status": "cancelled"}))
    assert Status.CANCELLED == cancelled.status
    running = observed(read("oxen", 200, {"generation_id": "job-1", "status": "processing", "extra": [1]}))
    assert Status.PROCESSING == running.status


def test_oxen_completed_stream_events() -> None:
    ok = oxen.parse_event(
        {
            "generation_id": "g1",
            "status": "succeeded",
            "media_type": "video",
            "model": "m",
            "url": "https://x.test/o",
        }
    )
    assert ("g1", Status.SUCCEEDED, ("https://x.test/o",)) == (ok.job_id, ok.status, ok.result_urls)
    bad = oxen.parse_event(
        {"generation_id": "g1", "status": "failed", "media_type": "video", "error": "nsfw"}
    )
    assert (Status.FAILED, "nsfw") == (bad.status, bad.error)


def test_oxen_stream_events_become_intake_requests() -> None:
    completed = oxen.intake_request(
        "media_generation_completed", '{"generation_id":"g1","status":"failed","error":"x"}', "", NOW
    )
    assert ("g1", 1, None) == (completed.delivery.job_id, len(completed.observations), completed.rejection)
    other = oxen.intake_request("model_loaded", '{"anything": 1}', "", NOW)
    assert ((), None, b'{"anything": 1}') == (other.observations, other.rejection, other.delivery.body)
    broken = oxen.intake_request("media_generation_completed", "{nope", "", NOW)
    assert "the event data is not JSON" == broken.rejection
    wrong = oxen.intake_request(
        "media_generation_completed", '{"generation_id":"g1","status":"cancelled"}', "", NOW
    )
    assert wrong.rejection is not None and "status" in wrong.rejection


def test_pixazo_and_apiframe_status_documents() -> None:
    p = observed(
        read(
            "pixazo",
            200,
            {
                "request_id": "job-1",
                "status": "ERROR",
                "error": "GPU fell over",
                "output": None,
                "created_at": "2026-05-22 13:17:32",
                "updated_at": "2026-05-22T13:19:23.110Z",
            },
        )
    )
    assert (Status.FAILED, "ERROR", "GPU fell over") == (p.status, p.provider_status, p.error)
    a = observed(
        read(
            "apiframe",
            200,
            {
                "id": "job-1",
                "status": "COMPLETED",
                "progress": 100,
                "result": {"videoUrl": "https://cdn.apiframe.test/o.mp4"},
                "webhookStatus": "sent",
                "expired": False,
            },
        )
    )
    assert (Status.SUCCEEDED, ("https://cdn.apiframe.test/o.mp4",)) == (a.status, a.result_urls)
    c = observed(read("apiframe", 200, {"id": "job-1", "status": "CANCELLED", "progress": None}))
    assert Status.CANCELLED == c.status


@pytest.mark.parametrize(
    ("body", "status", "urls"),
    [
        (
            {"status": "PROCESSING", "average_execution_time": 145000, "execution_duration": 53200},
            Status.PROCESSING,
            (),
        ),
        ({"status": "completed", "url": "https://v.test/o.mp4"}, Status.SUCCEEDED, ("https://v.test/o.mp4",)),
        (
            {"status": "COMPLETED", "download_url": "https://v.test/d.mp4"},
            Status.SUCCEEDED,
            ("https://v.test/d.mp4",),
        ),
        ({"status": "COMPLETED"}, Status.SUCCEEDED, ("https://dl.test/from-submit.mp4",)),
    ],
)
def test_venice_json_retrieve_variants(body: object, status: Status, urls: tuple[str, ...]) -> None:
    o = observed(read("venice", 200, body, download_url="https://dl.test/from-submit.mp4"))
    assert (status, urls) == (o.status, o.result_urls)


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (400, {"error": "Invalid request", "details": {"queue_id": "required"}}, "Invalid request"),
        (404, {"error": "MEDIA_NOT_FOUND"}, "MEDIA_NOT_FOUND"),
        (422, {"error": "Content policy violation", "credits_refunded": True}, "Content policy violation"),
        (500, {"error": "Inference failed"}, "Inference failed"),
    ],
)
def test_venice_http_errors_are_job_failures_with_venices_words(
    status: int, body: object, words: str
) -> None:
    o = observed(read("venice", status, body))
    assert Status.FAILED == o.status
    assert o.error is not None and words in o.error
    assert str(status) == o.provider_status


@pytest.mark.parametrize(
    ("status", "headers", "kind"),
    [
        (401, {}, Refused),
        (402, {}, Refused),
        (403, {}, Refused),
        (429, {"Retry-After": "12"}, Throttled),
        (503, {}, Unavailable),
        (502, {}, Unavailable),
        (408, {}, Unavailable),
    ],
)
def test_venice_account_and_capacity_errors_are_not_job_failures(
    status: int, headers: dict[str, str], kind: type
) -> None:
    reply = read("venice", status, {"error": "nope"}, headers)
    assert isinstance(reply, kind)


@pytest.mark.parametrize("provider", ["pixazo", "apiframe", "oxen"])
@pytest.mark.parametrize(
    ("status", "headers", "kind"),
    [
        (404, {}, Missing),
        (400, {}, Missing),
        (401, {}, Refused),
        (403, {}, Refused),
        (429, {"Retry-After": "3"}, Throttled),
        (500, {}, Unavailable),
        (503, {"Retry-After": "9"}, Unavailable),
        (301, {}, Unreadable),
    ],
)
def test_error_statuses_read_the_same_for_every_pushing_provider(
    provider: str, status: int, headers: dict[str, str], kind: type
) -> None:
    reply = read(provider, status, {"error": "Not found", "details": "no such job"}, headers)
    assert isinstance(reply, kind)
    if isinstance(reply, Throttled | Unavailable) and headers:
        assert float(headers["Retry-After"]) == reply.retry_after


@pytest.mark.parametrize(
    "body", [b"<html>oops</html>", b"[1,2]", b'{"status": "WHATEVER", "id": "job-1"}', b""]
)
def test_an_unreadable_200_is_kept_as_unreadable(body: bytes) -> None:
    assert isinstance(read("apiframe", 200, body), Unreadable)


def test_error_words_come_from_the_body() -> None:
    assert "Insufficient credits" == replies.words(b'{"error":"Insufficient credits","creditsRequired":5}')
    assert "plain text" == replies.words(b"plain text")
    assert 500 >= len(replies.words(b"x" * 10_000))
