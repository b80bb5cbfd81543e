"""The console in a real browser (Debian's chromium, headless, through Playwright)
against a real `jobtrail serve`: logging in, live updates, the audit trail, replays."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.browser.conftest import API_TOKEN, Console

pytestmark = pytest.mark.slow


def _until(check: Any, what: str, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


def _dead(console: Console, job: str) -> int:
    """Wait for the job's notification to be dead-lettered; its outbox id."""

    def dead() -> int | None:
        items = console.api("/api/outbox?status=dead&sink=webhook")["items"]
        return next((i["id"] for i in items if i["job_id"] == job), None)

    return int(_until(dead, f"{job}'s notification is dead"))


def test_logging_in_a_wrong_token_then_the_right_one(chromium: Any, console: Console) -> None:
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{console.url}/ui/jobs")
    assert "/ui/login" in page.url
    page.fill("#token", "not the token")
    page.click("button[type=submit]")
    assert "That is not the API token." in page.inner_text("[role=alert]")
    page.fill("#token", API_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{console.url}/ui/jobs")
    [cookie] = context.cookies()
    assert (True, "Strict") == (cookie["httpOnly"], cookie["sameSite"])
    page.click("text=Log out")
    page.wait_for_url(f"{console.url}/ui/login")
    page.goto(f"{console.url}/ui/")
    assert "/ui/login" in page.url, "logged out"
    context.close()


def test_a_webhook_arriving_while_the_jobs_page_is_open_shows_up_without_a_reload(
    page: Any, console: Console
) -> None:
    page.goto(f"{console.url}/ui/jobs")
    page.evaluate("window.__sameDocument = true")
    _until(lambda: page.evaluate("document.body.dataset.live") == "open", "the event stream is open")
    console.webhook("live-1", "PROCESSING", progress=40)
    page.wait_for_selector("#job-rows >> text=live-1")
    assert page.evaluate("window.__sameDocument") is True, "the page was not reloaded"
    console.webhook("live-1", "COMPLETED", output={"media_url": ["https://cdn.example/live-1.mp4"]})
    page.wait_for_selector("#job-rows tr.status-succeeded >> text=live-1")
    assert page.evaluate("window.__sameDocument") is True


def test_the_timeline_shows_a_duplicate_and_a_late_report(page: Any, console: Console) -> None:
    console.webhook("audit-1", "PROCESSING")
    console.webhook("audit-1", "ERROR", error="GPU fell over")
    console.webhook("audit-1", "ERROR", error="GPU fell over")  # redelivered
    console.webhook("audit-1", "QUEUED")  # late
    page.goto(f"{console.url}/ui/jobs/pixazo/audit-1")
    rows = page.locator("#timeline tr")
    texts = [rows.nth(i).inner_text() for i in range(rows.count())]
    assert any("duplicate" in t and "said nothing new" in t for t in texts), texts
    late = [t for t in texts if "ignored" in t]
    assert len(late) == 1 and "late: the job was already failed" in late[0], texts
    page.locator("tr.duplicate details.raw summary").first.click()
    assert "GPU fell over" in page.locator("tr.duplicate pre.body").first.inner_text()


def test_a_dead_notification_is_replayed_with_its_button(page: Any, console: Console) -> None:
    console.sink.broken.add("dead-1")
    console.webhook("dead-1", "ERROR", error="out of credits")
    item = _dead(console, "dead-1")
    console.sink.broken.discard("dead-1")
    page.goto(f"{console.url}/ui/jobs/pixazo/dead-1")
    section = page.locator(f"#item-{item}")
    assert "dead" in section.locator(".state").inner_text()
    assert "HTTP 500" in section.locator("table.attempts").inner_text(), "every attempt, with its error"
    section.get_by_role("button", name="Replay").click()
    assert f"Outbox item {item} is queued again." in page.inner_text("[role=status]")
    _until(lambda: "dead-1" in console.sink.taken, "the replayed notification arrives")
    page.wait_for_selector(f"#item-{item} .state >> text=done")  # the page updates itself


def test_bulk_replay_counts_then_replays_the_dead_items_of_a_time_range(page: Any, console: Console) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    for job in ("bulk-1", "bulk-2"):
        console.sink.broken.add(job)
        console.webhook(job, "ERROR", error="boom")
    for job in ("bulk-1", "bulk-2"):
        _dead(console, job)
    console.sink.broken.clear()
    page.goto(f"{console.url}/ui/outbox?status=dead")
    page.click("summary >> text=Replay dead items in bulk")
    bulk = page.locator("details.bulk form")
    bulk.locator("select[name=sink]").select_option("webhook")
    bulk.locator("input[name=since]").fill(since)
    bulk.get_by_role("button", name="Count them…").click()
    assert "2 dead items match" in page.inner_text("p.confirm")
    page.get_by_role("button", name="Replay 2 items").click()
    assert "2 dead items are queued again." in page.inner_text("[role=status]")
    _until(lambda: {"bulk-1", "bulk-2"} <= set(console.sink.taken), "both replayed notifications arrive")


def test_hostile_text_from_a_provider_is_shown_not_run(page: Any, console: Console) -> None:
    evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    console.webhook("evil<b>1", "ERROR", error=evil)
    page.goto(f"{console.url}/ui/jobs?q=evil")
    page.click("text=evil<b>1")
    page.wait_for_selector("h1 >> text=evil<b>1")
    assert evil in page.inner_text("dl.job")
    assert page.evaluate("window.__pwned") is None
    assert 0 == page.locator("dl.job img").count()


def test_a_post_without_the_csrf_token_is_refused(page: Any, console: Console) -> None:
    page.goto(f"{console.url}/ui/")
    status = page.evaluate(
        """async () => (await fetch('/ui/outbox/replay', {method: 'POST',
            body: new URLSearchParams({sink: 'webhook'})})).status"""
    )
    assert 403 == status
    page.goto(f"{console.url}/ui/outbox")
    page.click("summary >> text=Replay dead items in bulk")
    page.evaluate("document.querySelector('details.bulk input[name=csrf]').remove()")
    page.get_by_role("button", name="Count them…").click()
    assert "CSRF" in page.inner_text("[role=alert]")
