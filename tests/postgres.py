"""PostgreSQL for the tests: a fresh database per test, cloned from a template migrated
once per session, so tests never see each other's rows.

`JOBTRAIL_TEST_POSTGRES_URL` names a server (`.ci/run` sets it). Where it is not set or
not reachable, PostgreSQL tests are skipped with the reason; with
`JOBTRAIL_REQUIRE_POSTGRES=1` (as in `.ci/run`) they fail instead, so CI cannot pass
without running them.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

URL = os.environ.get("JOBTRAIL_TEST_POSTGRES_URL", "")
REQUIRED = os.environ.get("JOBTRAIL_REQUIRE_POSTGRES") == "1"
TEMPLATE = f"jobtrail_template_{os.getpid()}"

_template: str | None = None  # the template's name once built
_unavailable: str | None = None  # why PostgreSQL cannot be used, once known


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _refuse(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"PostgreSQL is required here (JOBTRAIL_REQUIRE_POSTGRES=1) but {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


async def _admin(statements: list[str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(URL, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _build_template() -> None:
    import asyncpg

    from jobtrail.store.postgres.schema import migrate

    await _admin([f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)', f'CREATE DATABASE "{TEMPLATE}"'])
    conn = await asyncpg.connect(with_database(URL, TEMPLATE), timeout=5)
    try:
        await migrate(conn)
    finally:
        await conn.close()


def template() -> str:
    """The migrated template's name (built on first use), or skip / fail with the reason."""
    global _template, _unavailable
    if _template is not None:
        return _template
    if _unavailable is None:
        if not URL:
            _unavailable = "JOBTRAIL_TEST_POSTGRES_URL is not set"
        else:
            try:
                import asyncpg  # noqa: F401 - the `postgres` extra
            except ImportError:
                _unavailable = "asyncpg is not installed (the `postgres` extra)"
            else:
                try:
                    _run_aside(_build_template())
                    _template = TEMPLATE
                    return _template
                except Exception as exc:
                    _unavailable = f"{URL} is not reachable: {type(exc).__name__}: {exc}"
    _refuse(_unavailable)
    raise AssertionError("unreachable")


def _run_aside(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to its end on a thread of its own (callable from inside a running
    event loop, as from an async fixture)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The URL of a new database, a copy of the migrated template, dropped afterwards."""
    source = template()
    name = f"jobtrail_test_{uuid.uuid4().hex[:12]}"
    await _admin([f'CREATE DATABASE "{name}" TEMPLATE "{source}"'])
    try:
        yield with_database(URL, name)
    finally:
        await _admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])


def drop_template() -> None:
    if _template is not None:
        _run_aside(_admin([f'DROP DATABASE IF EXISTS "{_template}" WITH (FORCE)']))
