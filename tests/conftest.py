"""Shared fixtures: settings, and every store backend through one parametrized fixture.

PostgreSQL tests get a database of their own (tests/postgres.py); where no server is
reachable they are skipped with a reason that says so (and fail in CI, which requires
them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from jobtrail.core import logs
from jobtrail.core.effects import EffectPlanner
from jobtrail.core.intake import Planner
from jobtrail.core.settings import Settings, load
from jobtrail.store import open_store
from jobtrail.store.base import Store
from tests import postgres

BACKENDS = ["memory", "sqlite", "postgres"]
WEBHOOK_TOKEN = "pixazo-token-0123456789abcdef"
APIFRAME_KEY = "apiframe-key-9f8e7d6c5b4a"
API_TOKEN = "api-token-abcdefghijklmnop"


class Backend:
    """A backend under test: its URL (a file, a database of its own) and opened stores on
    it, all closed at the end of the test."""

    def __init__(self, name: str, url: str, stack: AsyncExitStack) -> None:
        self.name, self.url, self._stack = name, url, stack

    async def open(self, planner: Planner | None = None) -> Store:
        store = open_store(self.url, planner or EffectPlanner(("slack",)))
        await store.open()
        self._stack.push_async_callback(store.close)
        return store


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with AsyncExitStack() as stack:
        if request.param == "postgres":
            url = await stack.enter_async_context(postgres.fresh_database())
        elif request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'jobtrail.db'}"
        else:
            url = "memory://"
        yield Backend(request.param, url, stack)


@pytest.fixture
async def store(backend: Backend) -> Store:
    """An opened store of each backend; SQLite is a real file, PostgreSQL a real database."""
    return await backend.open()


def pytest_sessionfinish(session: pytest.Session) -> None:
    postgres.drop_template()


@pytest.fixture(autouse=True)
def _uncached_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    """`jobtrail` run in-process (`cli.main`) configures logging as a program does, with
    each module's logger cached on first use; a logger cached so would keep writing where
    that test's configuration said, past it, and out of reach of `capture_logs`."""
    real = logs.configure
    monkeypatch.setattr(logs, "configure", lambda **options: real(**{**options, "cache": False}))


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
