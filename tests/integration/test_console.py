"""The console's pages and actions over HTTP (the browser tests are in tests/browser):
login, sessions, CSRF, escaping, filters, and what each page shows."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from jobtrail.core.model import utcnow
from jobtrail.receiver.auth import COOKIE, SESSION_SECONDS, Sessions
from jobtrail.receiver.keys import STORE
from jobtrail.store.base import Polls
from tests.conftest import API_TOKEN
from tests.integration.conftest import ClientFactory
from tests.integration.console import callback, csrf_of, log_in


@pytest.fixture
async def guarded(make_client: ClientFactory) -> TestClient[Any, Any]:
    """A receiver with JOBTRAIL_API_TOKEN set: the console asks for it."""
    return await make_client(JOBTRAIL_API_TOKEN=API_TOKEN)


@pytest.fixture
async def operator(guarded: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """The same receiver, with a logged-in session."""
    await log_in(guarded)
    return guarded


PAGES = ["/ui/", "/ui/jobs", "/ui/outbox", "/ui/deliveries", "/ui/jobs/rows"]


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_asks_for_the_token_first(guarded: TestClient[Any, Any], path: str) -> None:
    answer = await guarded.get(path, allow_redirects=False)
    assert 303 == answer.status
    assert answer.headers["Location"].startswith("/ui/login?next=")


async def test_a_right_token_starts_a_strict_httponly_session(guarded: TestClient[Any, Any]) -> None:
    form = await (await guarded.get("/ui/login?next=/ui/outbox")).text()
    assert 1 == form.count("<input") - form.count('type="hidden"'), "one field: the token"
    assert 'type="password"' in form
    answer = await guarded.post(
        "/ui/login", data={"token": API_TOKEN, "next": "/ui/outbox"}, allow_redirects=False
    )
    assert (303, "/ui/outbox") == (answer.status, answer.headers["Location"])
    cookie = answer.headers["Set-Cookie"]
    for flag in ("HttpOnly", "SameSite=Strict", f"Max-Age={SESSION_SECONDS}", "Path=/"):
        assert flag in cookie, cookie
    assert "Secure" not in cookie, "plain http on loopback: a Secure cookie would never come back"
    assert 200 == (await guarded.get("/ui/outbox")).status


async def test_the_cookie_is_secure_behind_https(guarded: TestClient[Any, Any]) -> None:
    answer = await guarded.post(
        "/ui/login",
        data={"token": API_TOKEN},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
    )
    assert "Secure" in answer.headers["Set-Cookie"]


@pytest.mark.parametrize("token", ["", "wrong", API_TOKEN + "x", API_TOKEN[:-1], "\u00e9" * 40])
async def test_a_wrong_token_shows_the_form_again_with_an_error(
    guarded: TestClient[Any, Any], token: str
) -> None:
    answer = await guarded.post("/ui/login", data={"token": token}, allow_redirects=False)
    assert 401 == answer.status
    assert "That is not the API token." in await answer.text()
    assert COOKIE not in answer.headers.get("Set-Cookie", "")
    assert 303 == (await guarded.get("/ui/", allow_redirects=False)).status


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/ui/", "/ui/../metrics", "/api/jobs", "/ui/\\evil", ""]
)
async def test_login_never_sends_the_browser_off_the_console(
    guarded: TestClient[Any, Any], target: str
) -> None:
    answer = await guarded.post("/ui/login", data={"token": API_TOKEN, "next": target}, allow_redirects=False)
    assert "/ui/" == answer.headers["Location"]


async def test_logout_ends_the_session(operator: TestClient[Any, Any]) -> None:
    csrf = await csrf_of(operator, "/ui/")
    answer = await operator.post("/ui/logout", data={"csrf": csrf}, allow_redirects=False)
    assert (303, "/ui/login") == (answer.status, answer.headers["Location"])
    assert 303 == (await operator.get("/ui/", allow_redirects=False)).status


async def test_a_forged_or_expired_session_is_no_session(guarded: TestClient[Any, Any]) -> None:
    now = [1_000_000.0]
    sessions = Sessions(API_TOKEN, clock=lambda: now[0])
    cookie = sessions.issue()
    assert sessions.nonce(cookie) is not None
    expires, nonce, mac = cookie.split(".")
    for forged in (
        f"{int(expires) + 999}.{nonce}.{mac}",
        f"{expires}.other.{mac}",
        f"{expires}.{nonce}.{mac[:-2]}AA",
        "",
        "x" * 5000,
        "..",
        "²³.a.b",
    ):
        assert sessions.nonce(forged) is None, forged
    assert Sessions("another token").nonce(cookie) is None, "a new token ends every session"
    now[0] += SESSION_SECONDS + 1
    assert sessions.nonce(cookie) is None, "expired"
    guarded.session.cookie_jar.update_cookies({COOKIE: Sessions(API_TOKEN).issue()})
    assert 200 == (await guarded.get("/ui/")).status, "any replica with the same token accepts it"


@pytest.mark.parametrize(
    "data",
    [{}, {"csrf": ""}, {"csrf": "forged"}, {"csrf": "x" * 10_000}],
    ids=["missing", "empty", "forged", "long"],
)
async def test_an_action_without_the_sessions_csrf_token_is_refused(
    operator: TestClient[Any, Any], data: dict[str, str]
) -> None:
    answer = await operator.post("/ui/outbox/replay", data=data)
    assert 403 == answer.status
    assert "CSRF" in await answer.text()


async def test_an_action_from_another_site_or_without_a_session_is_refused(
    operator: TestClient[Any, Any], guarded: TestClient[Any, Any]
) -> None:
    csrf = await csrf_of(operator)
    elsewhere = await operator.post(
        "/ui/outbox/replay", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert 403 == elsewhere.status
    proxied = await operator.post(
        "/ui/outbox/replay/confirm",
        data={"csrf": csrf},
        headers={"Origin": "https://jobtrail.example.com", "X-Forwarded-Host": "jobtrail.example.com"},
    )
    assert 200 == proxied.status, "behind a proxy that passes the public host on"
    operator.session.cookie_jar.clear()
    assert 403 == (await operator.post("/ui/outbox/replay", data={"csrf": csrf})).status


async def test_an_action_takes_a_form_only_and_a_small_one(operator: TestClient[Any, Any]) -> None:
    csrf = await csrf_of(operator)
    assert 415 == (await operator.post("/ui/outbox/replay", json={"csrf": csrf})).status
    big = await operator.post("/ui/outbox/replay", data={"csrf": csrf, "pad": "x" * 20_000})
    assert 413 == big.status


async def test_hostile_text_from_a_provider_is_escaped_everywhere(operator: TestClient[Any, Any]) -> None:
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'"
    await callback(operator, "<b>job<i>x", "ERROR", error=evil)
    pages = {
        "/ui/jobs": "&lt;b&gt;job&lt;i&gt;x",
        "/ui/jobs/pixazo/%3Cb%3Ejob%3Ci%3Ex": "&lt;script&gt;alert(1)&lt;/script&gt;",
        "/ui/deliveries": "&lt;b&gt;job&lt;i&gt;x",
        "/ui/deliveries/1": "&lt;script&gt;",
    }
    for path, escaped in pages.items():
        answer = await operator.get(path)
        text = await answer.text()
        assert 200 == answer.status, path
        assert escaped in text, path
        assert "<script>alert" not in text and "<img src=x" not in text and "<b>job" not in text, path
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"]


async def test_the_job_page_shows_effects_duplicates_and_raw_deliveries(
    operator: TestClient[Any, Any],
) -> None:
    await callback(operator, "p1", "PROCESSING")
    await callback(operator, "p1", "COMPLETED", output={"media_url": ["https://cdn/p1.mp4"]})
    await callback(operator, "p1", "COMPLETED", output={"media_url": ["https://cdn/p1.mp4"]})
    await callback(operator, "p1", "QUEUED")
    page = await (await operator.get("/ui/jobs/pixazo/p1")).text()
    assert "late: the job was already succeeded" in page
    assert 'class="tag duplicate"' in page and 'href="/ui/deliveries/3">#3</a> duplicate' in page
    assert page.index("processing → succeeded") < page.index("said nothing new") < page.index("late:")
    assert "Retry now" in page, "the pending download can be run now"
    assert "polled" not in page, "never polled"
    await operator.app[STORE].record_polls([Polls("pixazo", "p1", 12, utcnow(), "fedcba9876543210")])
    page = await (await operator.get("/ui/jobs/pixazo/p1")).text()
    assert re.search(r"<dt>polled</dt><dd[^>]*>12 times, last .*fedcba9876543210", page)


async def test_the_token_and_secrets_never_reach_a_page(operator: TestClient[Any, Any]) -> None:
    await callback(operator, "p1", "PROCESSING", note=f"echo {API_TOKEN}")
    for path in ("/ui/jobs/pixazo/p1", "/ui/deliveries/1"):
        text = await (await operator.get(path)).text()
        assert API_TOKEN not in text and "[redacted]" in text, path


@pytest.mark.parametrize(
    "path",
    [
        "/ui/jobs?status=done",
        "/ui/jobs?since=yesterday",
        "/ui/jobs?conflict=maybe",
        "/ui/jobs?cursor=zzz",
        "/ui/jobs?bogus=1",
        "/ui/outbox?sink=bogus",
        "/ui/outbox?after=-1",
        "/ui/deliveries?verdict=maybe",
    ],
)
async def test_a_bad_filter_is_a_message_on_the_page(operator: TestClient[Any, Any], path: str) -> None:
    answer = await operator.get(path)
    assert 400 == answer.status
    assert re.search(r'class="error" role="alert">[^<]+', await answer.text())


async def test_empty_filter_fields_mean_any(operator: TestClient[Any, Any]) -> None:
    await callback(operator, "p1", "PROCESSING")
    page = await (await operator.get("/ui/jobs?provider=&status=&conflict=&q=&since=&until=")).text()
    assert 'href="/ui/jobs/pixazo/p1"' in page


@pytest.mark.parametrize(
    "path", ["/ui/jobs/pixazo/nope", "/ui/jobs/runway/x", "/ui/deliveries/99", "/ui/deliveries/x"]
)
async def test_unknown_things_are_404_pages(operator: TestClient[Any, Any], path: str) -> None:
    answer = await operator.get(path)
    assert 404 == answer.status and "text/html" in answer.headers["Content-Type"]


async def test_the_overview_counts_jobs_and_conflicts(operator: TestClient[Any, Any]) -> None:
    await callback(operator, "a", "COMPLETED", output={"media_url": ["https://cdn/a.mp4"]})
    await callback(operator, "a", "ERROR", error="disagrees")
    await callback(operator, "b", "PROCESSING")
    page = await (await operator.get("/ui/")).text()
    assert re.search(r'<span class="big">1</span><a href="/ui/jobs\?conflict=true">jobs in conflict', page)
    assert 'href="/ui/jobs?provider=pixazo&amp;status=processing">1</a>' in page
    assert "events per minute since" in page and "<rect" in page


async def test_the_event_stream_takes_the_session_but_other_api_routes_do_not(
    operator: TestClient[Any, Any],
) -> None:
    stream = await operator.get("/api/events?after=0")
    assert 200 == stream.status
    stream.close()
    assert 401 == (await operator.get("/api/jobs")).status
    assert 401 == (await operator.post("/api/outbox/replay", json={})).status


async def test_without_a_token_the_console_is_open_and_actions_still_need_csrf(
    client: TestClient[Any, Any],
) -> None:
    assert 200 == (await client.get("/ui/")).status
    assert 303 == (await client.get("/ui/login", allow_redirects=False)).status
    assert 403 == (await client.post("/ui/outbox/replay", data={})).status
    csrf = await csrf_of(client)
    answer = await client.post("/ui/outbox/replay/confirm", data={"csrf": csrf})
    assert 200 == answer.status and "0 dead items match" in await answer.text()


async def test_the_root_sends_a_browser_to_the_console(guarded: TestClient[Any, Any]) -> None:
    for path in ("/", "/ui"):
        answer = await guarded.get(path, allow_redirects=False)
        assert (302, "/ui/") == (answer.status, answer.headers["Location"])


async def test_logged_in_twice_is_fine(guarded: TestClient[Any, Any]) -> None:
    await log_in(guarded)
    await log_in(guarded)
    assert 200 == (await guarded.get("/ui/")).status


async def test_retry_now_runs_a_pending_item_and_says_so_once(operator: TestClient[Any, Any]) -> None:
    await callback(operator, "p1", "COMPLETED", output={"media_url": ["https://cdn/p1.mp4"]})
    csrf = await csrf_of(operator, "/ui/jobs/pixazo/p1")
    answer = await operator.post(
        "/ui/outbox/1/retry", data={"csrf": csrf, "next": "/ui/jobs/pixazo/p1"}, allow_redirects=False
    )
    assert (303, "/ui/jobs/pixazo/p1") == (answer.status, answer.headers["Location"])
    page = await (await operator.get("/ui/jobs/pixazo/p1")).text()
    assert "Outbox item 1 will run now." in page
    assert "will run now" not in await (await operator.get("/ui/jobs/pixazo/p1")).text(), "shown once"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ui/outbox/1/replay", 409),
        ("/ui/outbox/99/replay", 404),
        ("/ui/outbox/99/retry", 404),
        ("/ui/outbox/x/retry", 404),
    ],
)
async def test_an_action_the_item_does_not_allow_is_a_clear_page(
    operator: TestClient[Any, Any], path: str, status: int
) -> None:
    await callback(operator, "p1", "COMPLETED", output={"media_url": ["https://cdn/p1.mp4"]})
    csrf = await csrf_of(operator)
    answer = await operator.post(path, data={"csrf": csrf})
    assert status == answer.status
    assert 'class="error" role="alert"' in await answer.text()


@pytest.mark.parametrize("field", [{"sink": "bogus"}, {"since": "yesterday"}, {"until": "x" * 100}])
async def test_a_bulk_replay_with_a_bad_field_is_refused(
    operator: TestClient[Any, Any], field: dict[str, str]
) -> None:
    csrf = await csrf_of(operator)
    for path in ("/ui/outbox/replay/confirm", "/ui/outbox/replay"):
        assert 400 == (await operator.post(path, data={"csrf": csrf, **field})).status


async def test_guessing_the_token_is_slowed_to_a_few_tries_a_minute(guarded: TestClient[Any, Any]) -> None:
    for _ in range(10):
        assert 401 == (await guarded.post("/ui/login", data={"token": "guess"})).status
    refused = await guarded.post("/ui/login", data={"token": API_TOKEN})
    assert 429 == refused.status, "even the right token waits once the tries are spent"
    assert int(refused.headers["Retry-After"]) >= 1
    assert "Too many attempts" in await refused.text()
