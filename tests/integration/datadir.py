"""A data directory as the terminal commands find it: `JOBTRAIL_DATA_DIR` pointing at a
SQLite log that holds the given Pixazo reports, no server running."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from jobtrail.core.model import Delivery, Observation, utcnow
from jobtrail.core.settings import load
from jobtrail.receiver.serve import store_for


def with_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reports: Sequence[tuple[str, str]]) -> Path:
    """`reports`: (job id, status) pairs, taken in order, one webhook delivery each."""
    for name in ("JOBTRAIL_CONFIG", "JOBTRAIL_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    monkeypatch.setenv("JOBTRAIL_DATA_DIR", str(data))
    settings = load(None, {"JOBTRAIL_DATA_DIR": str(data)})

    async def fill() -> None:
        store = store_for(settings)
        await store.open()
        for job_id, status in reports:
            await store.intake(
                Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job_id),
                [Observation("pixazo", job_id, status)],
            )
        await store.close()

    asyncio.run(fill())
    return data
