"""What an attacker can send, over a real socket to the receiver as `jobtrail serve` runs
it: every request answered by jobtrail in JSON, never a 5xx, every webhook kept.

Each test names the defect it pins (issue 19); each failed on the code before it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from jobtrail.core.model import Verdict
from jobtrail.core.settings import Settings
from jobtrail.receiver.bodies import MAX_HEADER_CHARS, TRUNCATED
from jobtrail.receiver.keys import METRICS
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN
from tests.integration.rawhttp import Served, exchange, request, serving
from tests.integration.scrape import counted
from tests.integration.test_replay import failed, kill_all
from tests.integration.test_webhooks import pixazo_body, signed

PIXAZO = f"/webhooks/pixazo/{WEBHOOK_TOKEN}"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
JSON_TYPE = {"Content-Type": "application/json"}


@pytest.fixture
async def served(make_settings: Callable[..., Settings]) -> AsyncIterator[Served]:
    async with serving(make_settings(JOBTRAIL_API_TOKEN=API_TOKEN)) as one:
        yield one


async def kept(served: Served) -> list[Any]:
    return await served.store.deliveries(limit=100_000)


# -- 1. a header byte that is not UTF-8 -------------------------------------------------


@pytest.mark.parametrize("target", [PIXAZO, "/webhooks/pixazo/wrong-token", "/webhooks/apiframe"])
async def test_a_header_byte_that_is_not_utf8_is_kept_not_a_500(served: Served, target: str) -> None:
    """Regression: `X-Note: caf\\xe9` gave a 500 and lost the delivery (orjson refused the
    surrogate aiohttp decoded the byte to)."""
    body = pixazo_body()
    headers = {**JSON_TYPE, **(signed(body) if "apiframe" in target else {})}
    reply = await exchange(
        served.port, request("POST", target, headers=headers, body=body, raw_headers=b"X-Note: caf\xe9\r\n")
    )
    assert reply.status is not None and reply.status < 500, reply
    [delivery] = await kept(served)
    assert "caf\ufffd" == delivery.delivery.headers["X-Note"]
    if target == PIXAZO:
        assert (200, Verdict.ACCEPTED) == (reply.status, delivery.verdict)


# -- 2. numbers, times, nesting, a lying Content-Length ----------------------------------


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/api/jobs?limit=%C2%B2", {}),
        ("/api/jobs?limit=" + "9" * 5000, {}),
        ("/api/jobs/pixazo/x/events?after=%C2%B2", {}),
        ("/api/jobs/pixazo/x/events?after=" + "9" * 5000, {}),
        ("/api/events", {"Last-Event-ID": "\u00b2".encode().decode("latin-1")}),
        ("/api/events", {"Last-Event-ID": "9" * 5000}),
        ("/api/outbox?since=0001-01-01T00:00:00%2B05:00", {}),
        ("/api/outbox?until=9999-12-31T23:59:59-05:00", {}),
        ("/api/outbox?sink=%00", {}),
        ("/api/jobs?cursor=" + "ajk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5", {}),
    ],
)
async def test_malformed_parameters_are_400_not_500(
    served: Served, target: str, headers: dict[str, str]
) -> None:
    reply = await exchange(served.port, request("GET", target, headers={**AUTH, **headers}))
    assert 400 == reply.status, reply
    assert reply.json()["error"] in ("bad_parameter", "bad_cursor", "bad_request")


@pytest.mark.parametrize("entry", ["%C2%B2", "9" * 5000, "%EF%BC%91"])
async def test_an_outbox_id_that_is_no_number_is_404(served: Served, entry: str) -> None:
    reply = await exchange(served.port, request("POST", f"/api/outbox/{entry}/replay", headers=AUTH))
    assert 404 == reply.status, reply


async def test_an_error_nested_1000_deep_is_taken_and_the_delivery_kept(served: Served) -> None:
    """Regression: `str()` of the nested `error` raised RecursionError: a 500, nothing kept."""
    nested = "[" * 1000 + "]" * 1000
    body = b'{"request_id": "deep", "status": "FAILED", "error": %s}' % nested.encode()
    reply = await exchange(served.port, request("POST", PIXAZO, headers=JSON_TYPE, body=body))
    assert 200 == reply.status, reply
    job = await served.store.get_job("pixazo", "deep")
    assert job is not None and "failed" == job.status.value and "nested too deeply" in (job.error or "")
    [delivery] = await kept(served)
    assert body == delivery.delivery.body


@pytest.mark.parametrize("target", [PIXAZO, "/webhooks/apiframe", "/webhooks/pixazo/wrong"])
async def test_a_lying_content_length_then_a_half_close_is_answered_and_kept(
    served: Served, target: str
) -> None:
    """Regression: the body's end raised ConnectionResetError outside the route's handling:
    no answer, a traceback, nothing kept."""
    raw = request("POST", target, headers={**JSON_TYPE, "Content-Length": "100"}, body=b'{"a": 1}')
    reply = await exchange(served.port, raw[: raw.index(b"\r\n\r\n") + 4] + b'{"a": 1}', half_close=True)
    assert reply.status in (400, 401), reply
    assert "error" in reply.json()
    [delivery] = await kept(served)
    assert Verdict.REJECTED == delivery.verdict


async def test_a_request_then_a_half_close_is_answered(served: Served) -> None:
    """Regression: a client that shut its sending side after a whole request got nothing."""
    reply = await exchange(served.port, request("GET", "/healthz"), half_close=True)
    assert (200, {"status": "alive"}) == (reply.status, reply.json())
    body = pixazo_body("half")
    reply = await exchange(
        served.port, request("POST", PIXAZO, headers=JSON_TYPE, body=body), half_close=True
    )
    assert (200, "accepted") == (reply.status, reply.json()["verdict"])


MALFORMED = [
    b"POST /webhooks/pixazo/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /webhooks/apiframe HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Long: " + b"b" * 9000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Bad: \x01\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello to the plain port
    b"GET /api/jobs?x=\xff HTTP/1.1\r\nHost: a\r\n\r\n",
    b"BREW /healthz HTCPCP/1.0\r\n\r\n",
]


@pytest.mark.parametrize("raw", MALFORMED, ids=range(len(MALFORMED)))
async def test_what_the_http_parser_refuses_is_answered_in_json(served: Served, raw: bytes) -> None:
    """Regression: aiohttp answered these in plain text quoting the bytes."""
    reply = await exchange(served.port, raw)
    assert reply.status is not None and 400 <= reply.status < 500, reply
    assert reply.headers["content-type"].startswith("application/json")
    assert {"error", "message"} == set(reply.json())
    assert b"\\x" not in reply.body and b"aaaa" not in reply.body, "the bytes are never quoted"
    assert 1 == sum(counted(served.app[METRICS], "jobtrail_http_refused").values())


@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_a_body_in_an_encoding_jobtrail_cannot_read_is_415_in_json(
    served: Served, encoding: str
) -> None:
    """aiohttp's parser refuses these with the headers, before any route: answered 415 in
    JSON and counted (not kept: no route, so no provider, is known yet)."""
    headers = {**JSON_TYPE, "Content-Encoding": encoding}
    reply = await exchange(served.port, request("POST", PIXAZO, headers=headers, body=b"\x00\x01"))
    assert (415, "unsupported_media_type") == (reply.status, reply.json()["error"])
    assert {"content_encoding": 1} == counted(served.app[METRICS], "jobtrail_http_refused")


@pytest.mark.parametrize(("encoding", "body"), [("gzip", b"\x1f\x8b\x08not gzip"), ("x-unheard-of", b"{")])
async def test_a_body_that_does_not_decode_is_400_and_kept(
    served: Served, encoding: str, body: bytes
) -> None:
    headers = {**JSON_TYPE, "Content-Encoding": encoding}
    reply = await exchange(served.port, request("POST", PIXAZO, headers=headers, body=body))
    assert reply.status == 400 and "error" in reply.json(), reply
    [delivery] = await kept(served)
    assert Verdict.REJECTED == delivery.verdict


# -- 6. stored headers are bounded; refused unauthenticated requests have a budget --------


async def test_a_refused_request_with_100_headers_of_1_kib_stores_at_most_16_kib(served: Served) -> None:
    many = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"v" * 1024) for n in range(100))
    reply = await exchange(served.port, request("POST", "/webhooks/pixazo/wrong", raw_headers=many))
    assert 401 == reply.status
    [delivery] = await kept(served)
    assert sum(len(k) + len(v) for k, v in delivery.delivery.headers.items()) <= MAX_HEADER_CHARS + 100
    assert "header(s) not kept" in delivery.delivery.headers[TRUNCATED]


async def test_refusals_over_a_sources_budget_are_429_counted_and_not_kept(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(JOBTRAIL_REFUSED_BYTES_PER_MINUTE=str(64 * 1024))
    many = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"v" * 1024) for n in range(100))
    async with serving(settings) as served:
        replies = [
            await exchange(served.port, request("POST", "/webhooks/pixazo/wrong", raw_headers=many))
            for _ in range(10)
        ]
        statuses = [r.status for r in replies]
        assert statuses[:3] == [401] * 3 and 429 in statuses, statuses
        throttled = replies[statuses.index(429)]
        assert int(throttled.headers["retry-after"]) >= 1 and "rate_limited" == throttled.json()["error"]
        stored = len(await kept(served))
        assert stored == statuses.count(401), "each 401 kept, each 429 not"
        good = await exchange(served.port, request("POST", PIXAZO, headers=JSON_TYPE, body=pixazo_body()))
        assert 200 == good.status, "a sender with the token is never held to the budget"
        metrics = (await exchange(served.port, request("GET", "/metrics"))).body.decode()
        assert f'jobtrail_refusals_not_kept_total{{provider="pixazo"}} {statuses.count(429)}' in metrics


# -- 8. a bulk replay answers at once, bounded ------------------------------------------


async def test_a_bulk_replay_is_bounded_and_answers_with_what_it_queued(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        JOBTRAIL_API_TOKEN=API_TOKEN, JOBTRAIL_SLACK_WEBHOOK_URL="https://hooks.slack.test/x/y"
    )
    async with serving(settings) as served:
        await _replay_in_bounds(served)


async def _replay_in_bounds(served: Served) -> None:
    await served.store.intake_many([failed(n) for n in range(40)])
    await kill_all(served.store, 40)
    body = json.dumps({"sink": "slack", "limit": 30}).encode()
    first = await exchange(
        served.port, request("POST", "/api/outbox/replay", headers={**AUTH, **JSON_TYPE}, body=body)
    )
    assert (200, {"replayed": 30, "more": True}) == (first.status, first.json())
    again = await exchange(
        served.port, request("POST", "/api/outbox/replay", headers={**AUTH, **JSON_TYPE}, body=body)
    )
    assert {"replayed": 10, "more": False} == again.json(), "the rest, each once"
    for limit in (0, 10_001, "many", True, -1):
        bad = json.dumps({"limit": limit}).encode()
        reply = await exchange(
            served.port, request("POST", "/api/outbox/replay", headers={**AUTH, **JSON_TYPE}, body=bad)
        )
        assert 400 == reply.status, limit
