"""What each provider accepts at submission, checked before any request is sent."""

from __future__ import annotations

import orjson
import pytest

from jobtrail.core.settings import ProviderSettings
from jobtrail.providers import submission
from jobtrail.providers.submission import Callback, InvalidSubmission, SubmitRefused

VIDEO = "https://media.example.com/a.mp4"
HOOK = Callback("https://jobtrail.example.com", "token-0123456789abcdef")


@pytest.mark.parametrize(
    ("provider", "options", "message"),
    [
        ("pixazo", {"upscale_factor": 3}, "upscale_factor must be 2, 4"),
        ("pixazo", {"webhook_mode": "always"}, "webhook_mode must be terminal, sync"),
        ("apiframe", {"resolution": "8k"}, "resolution must be 720p, 1080p, 4k"),
        ("apiframe", {"fps": 25}, "fps must be 24, 30, 60"),
        ("oxen", {"resolution": "720p"}, "resolution must be 1080p, 2k, 4k"),
        ("oxen", {"fps": 61}, "fps must be 1 to 60"),
        ("venice", {"upscale_factor": 3}, "upscale_factor must be 1, 2, 4"),
        ("venice", {"resolution": "4k"}, "'resolution' is not a venice option"),
        ("venice", {"upscale_factor": True}, "whole number"),
        ("runway", {}, "provider must be one of"),
    ],
)
def test_bad_parameters_are_named_before_any_request(
    provider: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidSubmission, match=message):
        submission.validate(provider, VIDEO, options)


@pytest.mark.parametrize("video", ["", "ftp://x/a.mp4", "file:///etc/passwd", "a.mp4"])
def test_the_video_must_be_a_url(video: str) -> None:
    with pytest.raises(InvalidSubmission, match="video must be"):
        submission.validate("oxen", video, {})


def test_pixazo_gets_the_token_route_and_the_mode() -> None:
    options = submission.validate("pixazo", VIDEO, {"webhook_mode": "sync", "upscale_factor": "4"})
    call = submission.submit_call(
        "pixazo", ProviderSettings("pixazo", "K", "https://p"), VIDEO, options, HOOK
    )
    assert (
        "https://jobtrail.example.com/webhooks/pixazo/token-0123456789abcdef" == call.headers["X-Webhook-URL"]
    )
    assert ("sync", {"video_url": VIDEO, "upscale_factor": 4}) == (call.headers["X-Webhook-Mode"], call.json)
    with pytest.raises(InvalidSubmission, match="JOBTRAIL_PUBLIC_URL"):
        submission.submit_call(
            "pixazo", ProviderSettings("pixazo", "K", "https://p"), VIDEO, options, Callback(None, None)
        )


def test_apiframe_gets_the_webhook_and_a_deterministic_idempotency_key() -> None:
    options = submission.validate("apiframe", VIDEO, {"resolution": "4k"})
    first = submission.submit_call(
        "apiframe", ProviderSettings("apiframe", "K", "https://a"), VIDEO, options, HOOK
    )
    again = submission.submit_call(
        "apiframe", ProviderSettings("apiframe", "K", "https://a"), VIDEO, options, HOOK
    )
    assert first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"]
    assert ["progress", "completed", "failed"] == first.json["webhookEvents"]
    assert "https://jobtrail.example.com/webhooks/apiframe" == first.json["webhookUrl"]
    other = submission.submit_call(
        "apiframe", ProviderSettings("apiframe", "K", "https://a"), VIDEO + "?b", options, HOOK
    )
    assert other.headers["Idempotency-Key"] != first.headers["Idempotency-Key"]


def test_answers_are_read_or_refused_with_the_providers_words() -> None:
    assert ("g1", {}) == submission.read_submitted(
        "oxen", 200, orjson.dumps({"generations": [{"generation_id": "g1"}]}), {}
    )
    venice = submission.read_submitted(
        "venice", 200, b'{"model": "m", "queue_id": "q", "download_url": "https://d/x"}', {"model": "m"}
    )
    assert ("q", {"model": "m", "download_url": "https://d/x"}) == venice
    with pytest.raises(SubmitRefused, match="Insufficient credits"):
        submission.read_submitted("apiframe", 402, b'{"error": "Insufficient credits"}', {})
    with pytest.raises(SubmitRefused, match="not understood"):
        submission.read_submitted("pixazo", 200, b"{}", {})
