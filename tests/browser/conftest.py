"""A real `jobtrail serve`, a webhook sink it notifies, and Debian's chromium driven by
Playwright. Without chromium (or Playwright) these tests skip and say why, unless
JOBTRAIL_REQUIRE_BROWSER is set (CI sets it, after installing chromium)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import free_port, start_serve

CHROMIUM = os.environ.get("JOBTRAIL_CHROMIUM", "/usr/bin/chromium")
API_TOKEN = "browser-api-token-0123456789abcdef"
WEBHOOK_TOKEN = "browser-webhook-token-0123456789"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Module-scoped, not longer: Playwright's sync API runs an event loop in this thread
    while it is open, and the asyncio tests after these need the thread to themselves."""
    why = _missing()
    if why:
        if os.environ.get("JOBTRAIL_REQUIRE_BROWSER"):
            pytest.fail(f"JOBTRAIL_REQUIRE_BROWSER is set, but {why}")
        pytest.skip(f"browser tests skipped: {why}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@dataclass
class Sink:
    """A webhook receiver that refuses (HTTP 500) every notification about a job in
    `broken`, and keeps the ids of the jobs it took."""

    port: int
    broken: set[str] = field(default_factory=set)
    taken: list[str] = field(default_factory=list)


def _sink() -> tuple[ThreadingHTTPServer, Sink]:
    sink = Sink(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            job = str(body["data"]["id"])
            refused = job in sink.broken
            if not refused:
                sink.taken.append(job)
            self.send_response(500 if refused else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", sink.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, sink


@dataclass
class Console:
    url: str
    sink: Sink
    data: Path

    def webhook(self, job: str, status: str, **extra: Any) -> None:
        body = json.dumps({"request_id": job, "status": status, **extra}).encode()
        request = urllib.request.Request(
            f"{self.url}/webhooks/pixazo/{WEBHOOK_TOKEN}",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert 200 == answer.status

    def api(self, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    data = tmp_path_factory.mktemp("console")
    server, sink = _sink()
    port = free_port()
    env = {
        "JOBTRAIL_PORT": str(port),
        "JOBTRAIL_DATA_DIR": str(data),
        "JOBTRAIL_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "JOBTRAIL_API_TOKEN": API_TOKEN,
        "JOBTRAIL_NOTIFY_WEBHOOK_URL": f"http://127.0.0.1:{sink.port}/hook",
        "JOBTRAIL_NOTIFY_WEBHOOK_SECRET": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "JOBTRAIL_RETRY_SCHEDULE": "1s",  # one retry, then dead: a dead letter in two seconds
    }
    process = start_serve(env, data / "serve.log")
    try:
        yield Console(f"http://127.0.0.1:{port}", sink, data)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        server.shutdown()


@pytest.fixture(scope="module")
def session(chromium: Any, console: Console) -> Any:
    """The cookies of one login through the form (logins are limited to a few a minute
    per address: each test gets a fresh context with these, not a login of its own)."""
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{console.url}/ui/")
    page.fill("#token", API_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{console.url}/ui/")
    state = context.storage_state()
    context.close()
    return state


@pytest.fixture
def page(chromium: Any, console: Console, session: Any) -> Iterator[Any]:
    """A fresh browser context, logged in."""
    context = chromium.new_context(storage_state=session)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()
