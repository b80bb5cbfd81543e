"""`jobtrail export`: finished jobs with their timelines, as JSON Lines.

One line per job, in the API's shapes (PRODUCT.md): `job` is what `GET
/api/jobs/{p}/{id}` answers, `events` and `duplicates` what `GET .../events` answers
(the events with their effect; duplicates among the job's first 1,000 deliveries).

Which jobs: terminal ones (succeeded, failed, cancelled) whose last change is before
`until`, optionally of one provider, newest first. Jobs are read a page at a time through
the created-at range (a job changes after it is created, so that range holds every job
that qualifies), then the job's events, so memory stays one job deep. Raw delivery bodies
are not exported: `jobtrail deliveries list` shows them while retention keeps them.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from jobtrail.receiver import history
from jobtrail.receiver.views import delivery_view, one_job
from jobtrail.store.base import Store

PAGE = 500
ALL_EVENTS = 10_000_000


async def finished_jobs(
    store: Store, until: datetime, provider: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    cursor: str | None = None
    while True:
        page = await store.list_jobs(provider=provider, until=until, limit=PAGE, cursor=cursor)
        for job in page.jobs:
            if not job.status.terminal or job.updated_at >= until:
                continue
            events = await history.annotated(store, job.provider, job.id, limit=ALL_EVENTS)
            found = await history.duplicates(store, job.provider, job.id)
            yield {
                "job": await one_job(store, job),
                "events": [{**e.to_json(), "effect": history.effect_json(effect)} for e, effect in events],
                "duplicates": [delivery_view(d) for d in found],
            }
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def export(
    store: Store,
    until: datetime,
    provider: str | None,
    out: Path | None,
    progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Write the lines to `out` (through a temporary file beside it, renamed when every
    line is written, so an export that fails leaves no half file) or to stdout; the
    number of jobs written."""
    count = 0
    if out is None:
        async for line in finished_jobs(store, until, provider):
            print(json.dumps(line, ensure_ascii=False))
            count += 1
        return count
    partial = out.with_name(f".{out.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as file:
            async for line in finished_jobs(store, until, provider):
                file.write(json.dumps(line, ensure_ascii=False) + "\n")
                count += 1
                if count % PAGE == 0:
                    progress(count)
            file.flush()
            os.fsync(file.fileno())
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return count
