"""The dispatcher's pure rules: retry schedule, attempt records, the SSRF guard,
Standard Webhooks signatures, notification messages, file names."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from standardwebhooks import Webhook, WebhookVerificationError

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.model import Job, Observation, OutboxEntry, OutboxItem, Status
from jobtrail.core.settings import Rule
from jobtrail.dispatch import messages, signing
from jobtrail.dispatch.download import file_name
from jobtrail.dispatch.guard import Refused, check_url, forbidden
from jobtrail.dispatch.schedule import Outcome, RetrySchedule, decide
from jobtrail.runtime import files

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def entry(kind: str = "notify", attempts: int = 0, sink: str = "webhook") -> OutboxEntry:
    item = OutboxItem(f"{kind}:{sink}:oxen:g1:succeeded", kind, "oxen", "g1", sink, {"status": "succeeded"})
    return OutboxEntry(7, item, "pending", attempts, None, NOW, NOW, NOW)


# -- retry schedule -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "wait"), [(1, 5), (2, 300), (3, 1800), (4, 7200), (5, 18000), (6, 36000), (7, 36000)]
)
def test_the_default_schedule_is_svixs(failures: int, wait: float) -> None:
    schedule = RetrySchedule()
    assert wait == schedule.after(failures, rand=lambda: 0.5)
    assert wait * 0.9 == pytest.approx(schedule.after(failures, rand=lambda: 0.0))
    assert wait * 1.1 == pytest.approx(schedule.after(failures, rand=lambda: 1.0))


def test_after_the_last_wait_the_item_is_given_up() -> None:
    assert None is RetrySchedule().after(8)
    assert 0.0 == RetrySchedule().after(0)


def test_retry_after_longer_than_the_wait_wins_up_to_a_day() -> None:
    schedule = RetrySchedule()
    assert 120 == schedule.after(1, retry_after=120, rand=lambda: 0.5)
    assert 5 == schedule.after(1, retry_after=1, rand=lambda: 0.5)
    assert 86400 == schedule.after(1, retry_after=10**9, rand=lambda: 0.5)


# -- attempt records ------------------------------------------------------------------


def test_a_delivered_notification_is_done_with_its_event() -> None:
    record = decide(entry(), Outcome(True, http_status=204), RetrySchedule(), NOW, 0.0123)
    assert ("done", 1, "notification.delivered", None) == (
        record.status,
        record.attempts,
        record.event_type,
        record.last_error,
    )
    assert {"sink": "webhook", "attempt": 1, "http_status": 204, "duration_ms": 12.3} == {
        k: record.event_data[k] for k in ("sink", "attempt", "http_status", "duration_ms")
    }


def test_a_failure_is_retried_on_the_schedule() -> None:
    record = decide(
        entry(attempts=1), Outcome(False, 500, "HTTP 500"), RetrySchedule(), NOW, 0.1, lambda: 0.5
    )
    assert ("pending", 2, "notification.failed", NOW + timedelta(seconds=300)) == (
        record.status,
        record.attempts,
        record.event_type,
        record.next_attempt_at,
    )
    assert "HTTP 500" == record.event_data["error"]


def test_the_eighth_failure_is_dead_lettered() -> None:
    record = decide(entry(attempts=7), Outcome(False, 500, "HTTP 500"), RetrySchedule(), NOW, 0.1)
    assert ("dead", "notification.dead") == (record.status, record.event_type)


def test_410_disables_the_sink_and_dead_letters_the_item() -> None:
    record = decide(
        entry(), Outcome(False, 410, "HTTP 410: gone", disable_sink=True), RetrySchedule(), NOW, 0.1
    )
    assert "dead" == record.status
    assert record.sink_state is not None and "webhook" == record.sink_state[0]
    assert "410" in record.sink_state[1] and record.event_data["sink_disabled"] == record.sink_state[1]


def test_a_refreshed_url_is_tried_at_once_but_still_runs_out() -> None:
    now_again = decide(
        entry("download", 2), Outcome(False, 403, "expired", retry_now=True), RetrySchedule(), NOW, 0.1
    )
    assert ("pending", NOW) == (now_again.status, now_again.next_attempt_at)
    last = decide(
        entry("download", 7), Outcome(False, 403, "expired", retry_now=True), RetrySchedule(), NOW, 0.1
    )
    assert "dead" == last.status


def test_a_permanent_failure_is_dead_at_once() -> None:
    record = decide(
        entry("download"), Outcome(False, error="refused", permanent=True), RetrySchedule(), NOW, 0
    )
    assert ("dead", "download.dead") == (record.status, record.event_type)


# -- the SSRF guard -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.8",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:10.0.0.1",
        "224.0.0.1",
        "255.255.255.255",
        # Regression: IPv6 addresses that carry a private IPv4 one, and site-local.
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "fec0::1",  # site-local
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    ],
)
def test_internal_addresses_are_forbidden(address: str) -> None:
    assert forbidden(address) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "151.101.1.69", "2606:4700:4700::1111", "2002:808:808::1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden(address) is None


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://cdn.example.com/a.mp4", ()),
        ("ftp://cdn.example.com/a.mp4", ()),
        ("file:///etc/passwd", ()),
        ("https://127.0.0.1/a.mp4", ()),
        ("https://[::1]/a.mp4", ()),
        ("https://169.254.169.254/latest/meta-data", ()),
        ("https://user:pw@cdn.example.com/a.mp4", ()),
        ("https:///nohost", ()),
        ("http://127.0.0.1:8000/a", ("localhost",)),
        # Regression: IPv4 spellings that some resolver reads as 127.0.0.1, and URLs that
        # do not parse (each was retried on the schedule instead of refused for good).
        ("https://2130706433/a.mp4", ()),
        ("https://127.1/a.mp4", ()),
        ("https://0177.0.0.1/a.mp4", ()),
        ("https://0x7f.0.0.1/a.mp4", ()),
        ("https://cdn.0x7f/a.mp4", ()),
        ("https://\uff11\uff12\uff17.0.0.1/a.mp4", ()),  # fullwidth digits
        ("https://127.0.0.1./a.mp4", ()),
        ("https://[", ()),
        ("https://[::1/a", ()),
        ("https://cdn.example.com:99999/a", ()),
        ("https://[2002:7f00:1::1]/a.mp4", ()),
    ],
)
def test_urls_that_are_refused(url: str, allow: tuple[str, ...]) -> None:
    with pytest.raises(Refused):
        check_url(url, allow)


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("https://cdn.example.com/a.mp4", ()),
        ("http://127.0.0.1:8000/a", ("127.0.0.1",)),
        ("http://media.internal/a", ("media.internal",)),
        ("https://8.8.8.8/a", ()),
        ("https://v4.example.com/a", ()),
        ("https://cdn-1.example.com/x/2130706433.mp4", ()),
    ],
)
def test_urls_that_are_allowed(url: str, allow: tuple[str, ...]) -> None:
    assert check_url(url, allow)


# -- Standard Webhooks ----------------------------------------------------------------


def test_the_published_vector() -> None:
    value = signing.signature(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}', [VECTOR_SECRET]
    )
    assert "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" == value


def test_the_reference_library_verifies_our_signature() -> None:
    body = b'{"type": "job.succeeded"}'
    headers = signing.headers("msg_1", int(time.time()), body, [VECTOR_SECRET])
    assert {"type": "job.succeeded"} == Webhook(VECTOR_SECRET).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(VECTOR_SECRET).verify(body + b" ", headers)


def test_during_rotation_each_secret_verifies() -> None:
    new = "whsec_" + base64.b64encode(b"n" * 32).decode()
    body = b"{}"
    headers = signing.headers("msg_2", int(time.time()), body, [VECTOR_SECRET, new])
    assert 2 == len(headers["webhook-signature"].split(" "))
    for secret in (VECTOR_SECRET, new):
        Webhook(secret).verify(body, headers)


def test_ed25519_signatures_verify_with_the_public_key() -> None:
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    loaded = signing.private_key("whsk_" + base64.b64encode(raw).decode())
    body = b'{"a": 1}'
    value = signing.signature("msg_3", 1700000000, body, (), [loaded])
    assert value.startswith("v1a,")
    key.public_key().verify(base64.b64decode(value[4:]), b"msg_3.1700000000." + body)
    assert signing.public_key(loaded).startswith("whpk_")


def test_the_webhook_id_is_stable_per_item() -> None:
    assert signing.webhook_id("notify:webhook:oxen:g1:succeeded") == signing.webhook_id(
        "notify:webhook:oxen:g1:succeeded"
    )
    assert signing.webhook_id("a") != signing.webhook_id("b")


@pytest.mark.parametrize("bad", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!"])
def test_bad_secrets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        signing.signature("m", 1, b"", [bad])


# -- messages -------------------------------------------------------------------------


def done_job() -> tuple[Job, list[OutboxEntry]]:
    job = Job(
        "oxen",
        "g1",
        NOW,
        NOW + timedelta(seconds=95),
        status=Status.SUCCEEDED,
        provider_status="succeeded",
        result_urls=("https://cdn.test/g1.mp4",),
    )
    download = OutboxEntry(
        1,
        OutboxItem(
            "d",
            "download",
            "oxen",
            "g1",
            "download",
            {"url": "https://cdn.test/g1.mp4", "path": "/data/g1.mp4", "bytes": 10, "sha256": "ab" * 32},
        ),
        "done",
        1,
        None,
        NOW,
        NOW,
    )
    return job, [download]


def test_the_slack_message_names_provider_job_status_duration_and_file() -> None:
    job, outbox = done_job()
    message = orjson.dumps(messages.slack(messages.notice(job, "succeeded", outbox))).decode()
    for words in ("oxen", "g1", "succeeded", "1m 35s", "/data/g1.mp4", "header", "section"):
        assert words in message


def test_a_failure_message_carries_the_error() -> None:
    job = Job("pixazo", "p1", NOW, NOW, status=Status.FAILED, provider_status="ERROR", error="GPU fell over")
    message = messages.slack(messages.notice(job, "failed", []))
    assert "GPU fell over" in orjson.dumps(message).decode()
    mail = messages.email(messages.notice(job, "failed", []), "jt@example.com", ["team@example.com"])
    assert "[jobtrail] pixazo job p1 failed" == mail["Subject"]
    assert "GPU fell over" in mail.get_content()


def test_the_webhook_body_has_the_standard_shape() -> None:
    job, outbox = done_job()
    doc = orjson.loads(messages.webhook(messages.notice(job, "succeeded", outbox), NOW))
    assert ("job.succeeded", "g1", "/data/g1.mp4") == (
        doc["type"],
        doc["data"]["id"],
        doc["data"]["downloads"][0]["path"],
    )


# -- rules and file names -------------------------------------------------------------


def test_rules_choose_the_sinks_for_each_status_change() -> None:
    planner = EffectPlanner(
        rules=(
            Rule(("slack",), ("failed",)),
            Rule(("webhook",), ("processing", "succeeded", "failed"), ("oxen",)),
        )
    )
    job = Job("oxen", "g1", NOW, NOW)
    running = Job("oxen", "g1", NOW, NOW, status=Status.PROCESSING)
    failed = Job("oxen", "g1", NOW, NOW, status=Status.FAILED)
    sinks = lambda items: sorted(i.sink for i in items if i.kind == "notify")  # noqa: E731
    assert ["webhook"] == sinks(planner(job, running, Observation("oxen", "g1", "processing")))
    assert ["slack", "webhook"] == sinks(planner(running, failed, Observation("oxen", "g1", "failed")))
    other = Job("pixazo", "p", NOW, NOW, status=Status.FAILED)
    assert ["slack"] == sinks(planner(None, other, Observation("pixazo", "p", "failed")))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://cdn.test/out/video.mp4?sig=1", "video.mp4"),
        ("https://cdn.test/..%2F..%2Fetc%2Fpasswd", "etc_passwd"),
        ("https://cdn.test/a/%00evil%0a.mp4", "evil_.mp4"),
        ("https://cdn.test/", "result-0"),
        ("https://cdn.test/..", "result-0"),
    ],
)
def test_file_names_cannot_escape_or_hide(url: str, expected: str) -> None:
    assert expected == file_name(url, 0)


def test_download_paths_stay_under_the_data_dir(tmp_path: Path) -> None:
    path = files.download_path(tmp_path, "oxen", "../../x", "../y")
    assert path.resolve().is_relative_to((tmp_path / "downloads" / "oxen").resolve())


COLLIDING_IDS = [
    "..",
    ".",
    "_",
    "job",
    "\U0001f3ac",
    "a b",
    "a:b",
    "a?b",
    "a_b",
    "A_B",
    "x" * 121,
    "x" * 120 + "y",
]


def test_job_ids_that_sanitize_alike_get_directories_of_their_own(tmp_path: Path) -> None:
    """Regression: `..`, `.`, `_`, `job` and an emoji all downloaded into `pixazo/job/`,
    `a b`, `a:b`, `a?b` into `a_b`, and two 121-character ids sharing 120 into one; a
    recorded download could hold another job's bytes."""
    dirs = [files.download_path(tmp_path, "pixazo", job, "video.mp4").parent for job in COLLIDING_IDS]
    assert len(set(dirs)) == len(COLLIDING_IDS)
    assert len({d.name.lower() for d in dirs}) == len(COLLIDING_IDS), "even where case is folded"
    for d in dirs:
        assert d.parent == tmp_path / "downloads" / "pixazo" and len(d.name) <= files.MAX_NAME
    assert "job-42" == files.download_path(tmp_path, "pixazo", "job-42", "v.mp4").parent.name, "readable"
    assert dirs[5].name.startswith("a_b~"), "the readable part kept beside the hash"


def test_each_result_of_a_job_has_a_file_name_of_its_own() -> None:
    """Regression: the first result from `.../1-x.mp4` and the second from `.../x.mp4`
    were both saved as `1-x.mp4`."""
    urls = [
        "https://cdn.test/1-x.mp4",
        "https://cdn.test/x.mp4",
        "https://cdn.test/0-x.mp4",
        "https://cdn.test/x.mp4",
    ]
    names = [file_name(url, index) for index, url in enumerate(urls)]
    assert len(set(names)) == len(names), names
    assert "x.mp4" == file_name("https://cdn.test/x.mp4?sig=2", 0), "a refreshed URL keeps its file"


def test_verify_accepts_our_signature_and_refuses_the_rest() -> None:
    body = b'{"a": 1}'
    now = int(time.time())
    headers = signing.headers("msg_v", now, body, [VECTOR_SECRET])
    assert signing.verify(headers, body, [VECTOR_SECRET], now)
    assert not signing.verify(headers, body + b" ", [VECTOR_SECRET], now)
    other = "whsec_" + base64.b64encode(b"o" * 32).decode()
    assert not signing.verify(headers, body, [other], now)
    assert not signing.verify(headers, body, [VECTOR_SECRET], now + 301), "too old"
    assert not signing.verify({**headers, "webhook-timestamp": "soon"}, body, [VECTOR_SECRET], now)
