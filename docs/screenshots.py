"""The README's pictures of the console, taken from a real run.

    python -m docs.screenshots [--out docs] [--chromium /usr/bin/chromium]

Runs `jobtrail demo` into a fresh data directory (eight jobs through the four provider
simulators, downloads and notifications), serves it with `jobtrail serve`, sends two more
Pixazo callbacks (a redelivery, and a late `QUEUED` after the job succeeded) so the
timeline shows a duplicate and a late report, then logs in with Debian's chromium and
saves a PNG of each page: overview, jobs, a job, outbox, deliveries.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from tests.e2e.helpers import free_port, start_serve

API_TOKEN = "screenshots-api-token-0123456789"
WEBHOOK_TOKEN = "screenshots-webhook-token-0123"
PAGES = {
    "overview": "/ui/",
    "jobs": "/ui/jobs",
    "job": None,  # the Pixazo job that succeeded, found at run time
    "outbox": "/ui/outbox",
    "deliveries": "/ui/deliveries",
}


def _post(url: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert 200 == answer.status


def _get(url: str) -> object:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {API_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def take(out: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jobtrail-screenshots-") as tmp:
        data = Path(tmp) / "data"
        demo = [sys.executable, "-m", "jobtrail.receiver.cli", "demo", "--keep", str(data)]
        subprocess.run(demo, check=True, capture_output=True, timeout=120)
        port = free_port()
        env = {
            "JOBTRAIL_PORT": str(port),
            "JOBTRAIL_DATA_DIR": str(data),
            "JOBTRAIL_API_TOKEN": API_TOKEN,
            "JOBTRAIL_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        }
        process = start_serve(env, Path(tmp) / "serve.log")
        url = f"http://127.0.0.1:{port}"
        try:
            jobs = _get(f"{url}/api/jobs?provider=pixazo&status=succeeded")
            job = jobs["jobs"][0]["id"]  # type: ignore[index]
            result = jobs["jobs"][0]["result_urls"]  # type: ignore[index]
            hook = f"{url}/webhooks/pixazo/{WEBHOOK_TOKEN}"
            _post(hook, {"request_id": job, "status": "COMPLETED", "output": {"media_url": result}})
            _post(hook, {"request_id": job, "status": "QUEUED"})
            PAGES["job"] = f"/ui/jobs/pixazo/{job}"
            taken = []
            with sync_playwright() as driver:
                browser = driver.chromium.launch(
                    executable_path=chromium, headless=True, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(f"{url}/ui/login")
                page.fill("#token", API_TOKEN)
                page.click("button[type=submit]")
                page.wait_for_url(f"{url}/ui/")
                for name, path in PAGES.items():
                    page.goto(f"{url}{path}")
                    if name == "job":
                        page.locator("tr.duplicate details.raw summary").first.click()
                    shot = out / f"console-{name}.png"
                    page.screenshot(path=str(shot), full_page=name != "deliveries")
                    taken.append(shot)
                browser.close()
            return taken
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--chromium", default=os.environ.get("JOBTRAIL_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    for shot in take(args.out, args.chromium):
        print(shot)


if __name__ == "__main__":
    main()
