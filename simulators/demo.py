"""`jobtrail demo`: the whole flow on loopback, against the simulators, in under a minute.

It starts the four simulators and jobtrail (receiver, listeners, dispatcher) with a fresh
data directory, submits jobs through `POST /api/jobs/submit`, and misbehaves on purpose:
Pixazo sends every callback twice (sync mode, many PROCESSING ones), every Apiframe
webhook is lost in transit, Oxen's stream drops every few seconds and one generation is
cancelled at Oxen (which never says so), and some jobs fail. Polling fills every gap.
It shows progress, then a summary; the exit status is 0 only if every job ended as it
should, with its file downloaded and its notification delivered.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson
from aiohttp import web

from jobtrail.core.settings import load
from jobtrail.dispatch import signing
from jobtrail.receiver.app import create_app
from jobtrail.receiver.serve import store_for
from jobtrail.simulators.base import Faults
from jobtrail.simulators.cluster import Cluster, free_port

TOKEN = "demo-webhook-token-0123456789"  # noqa: S105 - the demo's own throwaway token
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - the Standard Webhooks spec's example
DEADLINE = 45.0
VIDEO = "https://media.example.com/clips"


@dataclass
class Plan:
    provider: str
    video: str
    expect: str
    options: dict[str, Any]
    note: str
    job_id: str = ""


PLANS = [
    Plan(
        "pixazo",
        f"{VIDEO}/harbour.mp4?seconds=2",
        "succeeded",
        {"webhook_mode": "sync"},
        "sync callbacks, each sent twice",
    ),
    Plan("pixazo", f"{VIDEO}/error-gpu.mp4?seconds=2", "failed", {}, "Pixazo ERROR, callback twice"),
    Plan(
        "apiframe",
        f"{VIDEO}/forest.mp4?seconds=3",
        "succeeded",
        {"resolution": "4k"},
        "webhooks lost: found by polling",
    ),
    Plan("apiframe", f"{VIDEO}/fail-codec.mp4?seconds=2", "failed", {}, "webhooks lost: found by polling"),
    Plan("oxen", f"{VIDEO}/city.mp4?seconds=3", "succeeded", {}, "SSE stream drops every 2 s"),
    Plan("oxen", f"{VIDEO}/night.mp4?seconds=4", "cancelled", {}, "cancelled at Oxen, which never says so"),
    Plan("venice", f"{VIDEO}/beach.mp4?seconds=2", "succeeded", {}, "polled; the answer is the video"),
    Plan("venice", f"{VIDEO}/fail-policy.mp4?seconds=2", "failed", {}, "polled; 422 content policy"),
]


class Notifications:
    """The team's own endpoint: counts the verified, signed notifications per job."""

    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = {}

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not signing.verify(dict(request.headers), body, [SECRET], int(time.time())):
            return web.Response(status=401)
        doc = orjson.loads(body)
        self.seen.setdefault(doc["data"]["id"], set()).add(request.headers["webhook-id"])
        return web.Response(status=204)


def demo_faults() -> dict[str, Faults]:
    return {
        "pixazo": Faults(duplicate=1.0),
        "apiframe": Faults(drop=1.0),
        "oxen": Faults(disconnect_after=2.0),
    }


async def run_demo(
    out: TextIO = sys.stdout,
    keep: Path | None = None,
    plans: list[Plan] | None = None,
    faults: dict[str, Faults] | None = None,
    deadline: float = DEADLINE,
) -> int:
    started = time.monotonic()
    plans = [Plan(p.provider, p.video, p.expect, dict(p.options), p.note) for p in (plans or PLANS)]
    data_dir = keep or Path(tempfile.mkdtemp(prefix="jobtrail-demo-"))
    cluster = Cluster.build(demo_faults() if faults is None else faults)
    await cluster.start()
    notifications = Notifications()
    sink = web.Application()
    sink.router.add_post("/hook", notifications.hook)
    sink_runner = web.AppRunner(sink, access_log=None)
    await sink_runner.setup()
    sink_port, port = free_port(), free_port()
    await web.TCPSite(sink_runner, "127.0.0.1", sink_port).start()
    base = f"http://127.0.0.1:{port}"
    env = {
        **cluster.environment(),
        "JOBTRAIL_DATA_DIR": str(data_dir),
        "JOBTRAIL_PORT": str(port),
        "JOBTRAIL_PUBLIC_URL": base,
        "JOBTRAIL_WEBHOOK_TOKEN": TOKEN,
        "JOBTRAIL_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
        "JOBTRAIL_POLL_MIN_INTERVAL": "0.5",
        "JOBTRAIL_POLL_MAX_INTERVAL": "2",
        "JOBTRAIL_SSE_READ_TIMEOUT": "5",
        "JOBTRAIL_RETRY_SCHEDULE": "1s,1s,2s,5s",
        "JOBTRAIL_NOTIFY_WEBHOOK_URL": f"http://127.0.0.1:{sink_port}/hook",
        "JOBTRAIL_NOTIFY_WEBHOOK_SECRET": SECRET,
    }
    settings = load(None, env)
    store = store_for(settings)
    await store.open()
    runner = web.AppRunner(create_app(settings, store, background=True), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    tty = out.isatty()
    say = _Printer(out, tty)
    say.line(f"jobtrail demo: four provider simulators and jobtrail on {base}, data in {data_dir}")
    try:
        async with aiohttp.ClientSession(base) as client:
            for plan in plans:
                plan.job_id = await _submit(client, plan)
                say.line(f"  submitted {plan.provider:<8} {plan.job_id[:36]:<36}  {plan.note}")
            await asyncio.sleep(1.0)
            async with aiohttp.ClientSession() as raw:
                for cancel in (p for p in plans if p.expect == "cancelled"):
                    url = f"{cluster.bases['oxen']}/api/ai/queue/{cancel.job_id}"
                    auth = {"Authorization": f"Bearer {env['OXEN_API_KEY']}"}
                    async with raw.delete(url, headers=auth) as response:
                        await response.read()
                    say.line(f"  cancelled oxen    {cancel.job_id[:36]} at Oxen")
            views = await _watch(client, plans, notifications, say, started + deadline)
    finally:
        await runner.cleanup()
        await store.close()
        await sink_runner.cleanup()
        await cluster.stop()
    ok = _summary(plans, views, notifications, say)
    say.line("")
    say.line(f"Took {time.monotonic() - started:.1f} s. The log and the files are kept in {data_dir}:")
    say.line(f"  JOBTRAIL_DATA_DIR={data_dir} jobtrail jobs list")
    say.line(f"  JOBTRAIL_DATA_DIR={data_dir} jobtrail jobs show {plans[0].provider} {plans[0].job_id}")
    say.line(f"  JOBTRAIL_DATA_DIR={data_dir} jobtrail serve    # then open http://127.0.0.1:8080/ui/")
    say.line(
        "Run it for real with `jobtrail serve`: the console is at http://127.0.0.1:8080/ui/, "
        "the API at /api/jobs (README.md)."
    )
    say.line("demo: every job ended as it should" if ok else "demo: SOME JOBS DID NOT END AS THEY SHOULD")
    return 0 if ok else 1


async def _submit(client: aiohttp.ClientSession, plan: Plan) -> str:
    for _ in range(100):
        async with client.post(
            "/api/jobs/submit", json={"provider": plan.provider, "video": plan.video, **plan.options}
        ) as r:
            doc = await r.json()
            if r.status == 201:
                return str(doc["id"])
            if r.status != 503:  # 503: the Oxen stream is not connected yet
                raise RuntimeError(f"submitting to {plan.provider} failed: {doc}")
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{plan.provider} never became ready")


def _settled(view: dict[str, Any], notified: bool) -> bool:
    if view.get("status") not in ("succeeded", "failed", "cancelled"):
        return False
    downloads = all(d["status"] in ("done", "dead") for d in view.get("downloads", []))
    return downloads and notified


async def _watch(
    client: aiohttp.ClientSession,
    plans: list[Plan],
    notifications: Notifications,
    say: _Printer,
    until: float,
) -> dict[str, dict[str, Any]]:
    views: dict[str, dict[str, Any]] = {}
    last: dict[str, str] = {}
    while time.monotonic() < until:
        for plan in plans:
            async with client.get(f"/api/jobs/{plan.provider}/{plan.job_id}") as r:
                views[plan.job_id] = await r.json()
            view = views[plan.job_id]
            state = f"{view['status']}" + (
                f" {view['progress']}%" if view.get("progress") not in (None, 100) else ""
            )
            if last.get(plan.job_id) != state:
                last[plan.job_id] = state
                say.progress(plan, state)
        if all(_settled(views[p.job_id], p.job_id in notifications.seen) for p in plans):
            break
        await asyncio.sleep(0.25)
    say.done()
    return views


def _summary(
    plans: list[Plan], views: dict[str, dict[str, Any]], notifications: Notifications, say: _Printer
) -> bool:
    say.line("")
    rows = [("PROVIDER", "JOB", "EXPECTED", "FINAL", "FILE", "BYTES", "SHA256", "NOTIFIED")]
    ok = True
    for plan in plans:
        view = views.get(plan.job_id, {})
        files = [d for d in view.get("downloads", []) if d["status"] == "done"]
        notified = len(notifications.seen.get(plan.job_id, ()))
        good = view.get("status") == plan.expect and (plan.expect != "succeeded" or len(files) == 1)
        good = good and notified == 1
        ok = ok and good
        file = files[0] if files else {}
        rows.append(
            (
                plan.provider,
                plan.job_id[:18] + ("…" if len(plan.job_id) > 18 else ""),
                plan.expect,
                str(view.get("status", "?")) + ("" if good else "  <- WRONG"),
                _short(Path(file["path"]).name) if file else "-",
                str(file.get("bytes", "-")),
                (file["sha256"][:12] + "…") if file else "-",
                str(notified),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        say.line(
            ("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))).rstrip()
        )
    return ok


def _short(name: str) -> str:
    return name if len(name) <= 24 else name[:12] + "…" + name[-8:]


class _Printer:
    """Plain lines off a terminal; a live table on one."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out, self.tty = out, tty
        self.states: dict[str, str] = {}
        self.drawn = 0

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def progress(self, plan: Plan, state: str) -> None:
        if not self.tty:
            self.line(f"  {plan.provider:<8} {plan.job_id[:36]:<36}  {state}")
            return
        self.states[f"{plan.provider:<8} {plan.job_id[:36]}"] = state
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F")
        for key, value in self.states.items():
            self.out.write(f"\x1b[2K  {key}  {value}\n")
        self.drawn = len(self.states)
        self.out.flush()

    def done(self) -> None:
        self.drawn = 0


def main() -> int:
    keep = os.environ.get("JOBTRAIL_DEMO_DIR")
    return asyncio.run(run_demo(keep=Path(keep) if keep else None))
