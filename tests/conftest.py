"""Shared fixtures: settings, and every store backend through one parametrized fixture.

The PostgreSQL backend joins `BACKENDS` when it exists; where a database is unreachable
its tests are skipped with a reason that says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.settings import Settings, load
from jobtrail.store import open_store
from jobtrail.store.base import Store

BACKENDS = ["memory", "sqlite"]
WEBHOOK_TOKEN = "pixazo-token-0123456789abcdef"
APIFRAME_KEY = "apiframe-key-9f8e7d6c5b4a"
API_TOKEN = "api-token-abcdefghijklmnop"


def store_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'jobtrail.db'}"
    return "memory://"


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened store of each backend; SQLite is a real file."""
    opened = open_store(store_url(request.param, tmp_path), EffectPlanner(("slack",)))
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings as `jobtrail serve` would load them from this environment."""

    def make(**env: str) -> Settings:
        base = {
            "JOBTRAIL_DATA_DIR": str(tmp_path / "data"),
            "JOBTRAIL_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "APIFRAME_API_KEY": APIFRAME_KEY,
        }
        return load(None, {**base, **env})

    return make


def _dump_tasks(signum: int, frame: object) -> None:
    """`kill -USR1 <pytest pid>` writes every asyncio task's stack to
    /tmp/jobtrail-tasks-<pid>.txt: for finding what a hung test waits on."""
    import asyncio
    import os

    with open(f"/tmp/jobtrail-tasks-{os.getpid()}.txt", "w") as out:
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            return
        for task in asyncio.all_tasks(loop):
            out.write(f"--- {task!r}\n")
            task.print_stack(file=out)


if hasattr(__import__("signal"), "SIGUSR1"):
    import signal

    signal.signal(signal.SIGUSR1, _dump_tasks)
