"""Provider payloads as the providers send them (seed documents verbatim), and signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from hypothesis import example, given
from hypothesis import strategies as st

from jobtrail.core.model import Status
from jobtrail.providers import apiframe, fields, pixazo
from jobtrail.providers.fields import PayloadError

FIXTURES = Path(__file__).parent.parent / "fixtures"
API_KEY = "apiframe-key-9f8e7d6c5b4a"
COMPLETED_BODY = (
    b'{"event":"completed","jobId":"a1b2c3d4-e5f6-7890-abcd-ef1234567890","status":"COMPLETED",'
    b'"progress":100,"result":{"videoUrl":"https://cdn.apiframe.ai/v/out.mp4"},'
    b'"model":"topaz-video-upscale","creditCost":12,"completedAt":"2026-05-22T13:19:23.000Z"}'
)
# Computed with: printf BODY | openssl dgst -sha256 -mac HMAC -macopt hexkey:$(printf KEY | sha256sum)
COMPLETED_SIGNATURE = "1c40de7b6b4dd7ce00cb685592349c0f0ca736641f1e818016007f7ae1f211a2"


def load(name: str) -> object:
    return json.loads((FIXTURES / name).read_text())


def test_pixazo_completed_callback_from_the_seed() -> None:
    o = pixazo.parse_status(load("pixazo_completed.json"))
    assert "topaz-upscale-video-753_019dxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" == o.job_id
    assert Status.SUCCEEDED == o.status
    assert "COMPLETED" == o.provider_status
    assert 1 == len(o.result_urls) and o.result_urls[0].endswith("/output.mp4")
    assert datetime(2026, 5, 22, 13, 19, 23, tzinfo=UTC) == o.provider_at


def test_pixazo_error_is_failed_keeping_the_providers_word() -> None:
    o = pixazo.parse_status(load("pixazo_error.json"))
    assert (Status.FAILED, "ERROR", "Description of the error") == (o.status, o.provider_status, o.error)
    assert () == o.result_urls


def test_pixazo_status_document_with_iso_timestamps() -> None:
    o = pixazo.parse_status(load("pixazo_status_completed.json"))
    assert datetime(2026, 3, 31, 10, 0, 15, tzinfo=UTC) == o.provider_at


@pytest.mark.parametrize(
    ("word", "status"),
    [("QUEUED", Status.QUEUED), ("PROCESSING", Status.PROCESSING), ("FAILED", Status.FAILED)],
)
def test_pixazo_status_words(word: str, status: Status) -> None:
    assert status == pixazo.parse_status({"request_id": "r1", "status": word, "extra": [1]}).status


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"status": "QUEUED"}, "request_id"),
        ({"request_id": "", "status": "QUEUED"}, "request_id"),
        ({"request_id": "r\x00", "status": "QUEUED"}, "request_id"),
        ({"request_id": "x" * 300, "status": "QUEUED"}, "request_id"),
        ({"request_id": "r1", "status": "DONE"}, "status"),
        ({"request_id": "r1", "status": "COMPLETED", "output": {"media_url": "ftp://x"}}, "media_url"),
        ({"request_id": "r1", "status": "QUEUED", "updated_at": "yesterday"}, "updated_at"),
        ([1, 2], "object"),
    ],
)
def test_pixazo_bad_payloads_name_the_field(payload: object, field: str) -> None:
    with pytest.raises(PayloadError, match=field):
        pixazo.parse_status(payload)


def test_apiframe_completed_webhook_with_videourl_object() -> None:
    o = apiframe.parse(json.loads(COMPLETED_BODY))
    assert (Status.SUCCEEDED, 100) == (o.status, o.progress)
    assert ("https://cdn.apiframe.ai/v/out.mp4",) == o.result_urls


def test_apiframe_result_as_plain_string_and_job_document_id() -> None:
    o = apiframe.parse({"id": "j-1", "status": "COMPLETED", "result": "https://cdn/x.mp4", "expired": False})
    assert ("j-1", ("https://cdn/x.mp4",)) == (o.job_id, o.result_urls)


def test_apiframe_progress_failed_and_cancelled() -> None:
    progress = apiframe.parse(
        {"event": "progress", "jobId": "j", "status": "PROCESSING", "progress": 45, "model": "m"}
    )
    failed = apiframe.parse({"event": "failed", "jobId": "j", "status": "FAILED", "error": "bad input"})
    cancelled = apiframe.parse({"id": "j", "status": "CANCELLED"})
    assert (Status.PROCESSING, 45) == (progress.status, progress.progress)
    assert (Status.FAILED, "bad input") == (failed.status, failed.error)
    assert Status.CANCELLED == cancelled.status


def test_apiframe_event_name_stands_in_for_a_missing_status() -> None:
    assert Status.FAILED == apiframe.parse({"event": "failed", "jobId": "j"}).status


@pytest.mark.parametrize("progress", [-1, 101, "45", True])
def test_apiframe_progress_out_of_range_is_refused(progress: object) -> None:
    with pytest.raises(PayloadError, match="progress"):
        apiframe.parse({"jobId": "j", "status": "PROCESSING", "progress": progress})


def test_apiframe_signature_matches_an_independent_openssl_computation() -> None:
    assert COMPLETED_SIGNATURE == apiframe.sign(apiframe.signing_key(API_KEY), COMPLETED_BODY)


def test_apiframe_signature_matches_cryptography_hmac_keyed_with_the_raw_digest() -> None:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(API_KEY.encode())
    mac = crypto_hmac.HMAC(digest.finalize(), hashes.SHA256())
    mac.update(COMPLETED_BODY)
    assert mac.finalize().hex() == apiframe.sign(apiframe.signing_key(API_KEY), COMPLETED_BODY)


@pytest.mark.parametrize(
    ("header", "valid"),
    [
        (f"sha256={COMPLETED_SIGNATURE}", True),
        (COMPLETED_SIGNATURE, True),
        (COMPLETED_SIGNATURE.upper(), True),
        (f"sha256={COMPLETED_SIGNATURE[:-1]}0", False),
        ("sha256=", False),
        ("", False),
        (None, False),
        ("sha256=ü" * 10, False),
    ],
)
def test_apiframe_signature_header_forms(header: str | None, valid: bool) -> None:
    assert valid == apiframe.verify(apiframe.signing_key(API_KEY), COMPLETED_BODY, header)


def test_a_signature_keyed_with_the_hex_digest_is_refused() -> None:
    """The key is the raw 32-byte digest, not its hex text (a common mistake)."""
    import hashlib
    import hmac

    wrong = hmac.new(hashlib.sha256(API_KEY.encode()).hexdigest().encode(), COMPLETED_BODY, "sha256")
    assert not apiframe.verify(apiframe.signing_key(API_KEY), COMPLETED_BODY, wrong.hexdigest())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-05-22T13:17:32.110Z", datetime(2026, 5, 22, 13, 17, 32, 110000, tzinfo=UTC)),
        ("2026-05-22 13:19:23", datetime(2026, 5, 22, 13, 19, 23, tzinfo=UTC)),
        (1775090723, datetime(2026, 4, 2, 0, 45, 23, tzinfo=UTC)),
        (None, None),
    ],
)
def test_both_timestamp_formats_and_unix_seconds(raw: object, expected: datetime | None) -> None:
    assert expected == fields.timestamp(raw, "t")


def _timestamp_as_before(value: str) -> datetime | None:
    """fields.timestamp for strings as it was written first: parse, then `.replace(tzinfo=UTC)`."""
    raw = value.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@given(st.text(alphabet="0123456789-+:.TZ tzW", max_size=32))
@example("2026-05-22 13:19:23")
@example("2026-05-22")
@example("2026-05-22T13")
@example("20260522T131923")
@example("20260522T131923-0500")
@example("2026-05-22T13:19:23-05:00")
@example("2026-W21-5T10:00")
@example(" 2026-05-22T13:19:23.110 ")
def test_a_time_without_an_offset_is_read_as_utc_as_before(value: str) -> None:
    """A time with no offset gets "+00:00" appended before parsing (cheaper than replacing
    the zone after): every string is read exactly as before, or refused as before."""
    expected = _timestamp_as_before(value)
    try:
        got = fields.timestamp(value, "t")
    except PayloadError:
        got = None
    assert expected == got
    if got is not None:
        assert (expected.utcoffset(), expected.tzinfo is UTC) == (got.utcoffset(), got.tzinfo is UTC)


@pytest.mark.parametrize(
    ("api_key", "header", "reason"),
    [
        (None, "sha256=00", "APIFRAME_API_KEY is not set, so no signature can be checked"),
        (API_KEY, None, "the X-Webhook-Signature header is missing"),
        (API_KEY, "", "the X-Webhook-Signature header is missing"),
        (API_KEY, "sha256=" + "0" * 64, "the X-Webhook-Signature does not sign this body"),
    ],
)
def test_apiframe_refusals_say_which_check_failed(
    api_key: str | None, header: str | None, reason: str
) -> None:
    assert reason == apiframe.refusal(api_key, header, COMPLETED_BODY)


def test_apiframe_a_good_signature_is_no_refusal() -> None:
    header = "sha256=" + apiframe.sign(apiframe.signing_key(API_KEY), COMPLETED_BODY)
    assert None is apiframe.refusal(API_KEY, header, COMPLETED_BODY)


def test_free_text_keeps_the_providers_words_with_nul_replaced() -> None:
    assert "disk\ufffdfull" == fields.text("disk\0full", "error")
    assert "plain" == fields.text("plain", "error")


@pytest.mark.parametrize("value", ["https://cdn.test/a\0b.mp4", "https://cdn.test/a\nb.mp4"])
def test_a_url_with_control_characters_is_refused(value: str) -> None:
    with pytest.raises(fields.PayloadError, match="control characters"):
        fields.url(value, "result")
