"""The jobs bench/scale builds and the API routes it reads, shared by the builder (`run.py`)
and the client process (`clients.py`)."""

from __future__ import annotations

import random
from collections.abc import Callable

PROVIDERS = ("pixazo", "apiframe", "oxen", "venice")


def job(n: int) -> tuple[str, str]:
    return PROVIDERS[n % 4], f"job-{n:08d}"


def routes(jobs: int, since: str) -> dict[str, Callable[[], str]]:
    def any_job() -> str:
        provider, job_id = job(random.randrange(jobs))
        return f"/api/jobs/{provider}/{job_id}"

    return {
        "healthz (the floor)": lambda: "/healthz",
        "job lookup": any_job,
        "job events": lambda: any_job() + "/events",
        "jobs, first page": lambda: "/api/jobs",
        "jobs?provider": lambda: f"/api/jobs?provider={random.choice(PROVIDERS)}",
        "jobs?status=failed": lambda: "/api/jobs?status=failed",
        "jobs?conflict=true": lambda: "/api/jobs?conflict=true",
        "jobs?since (last hour)": lambda: f"/api/jobs?since={since}",
        "outbox?status=dead": lambda: "/api/outbox?status=dead",
        "outbox?sink=slack": lambda: "/api/outbox?sink=slack",
        "deliveries?verdict=rejected": lambda: "/api/deliveries?verdict=rejected",
        "deliveries?provider": lambda: f"/api/deliveries?provider={random.choice(PROVIDERS)}",
    }
