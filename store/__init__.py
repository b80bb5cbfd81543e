"""The event log, job projection and outbox, behind one port (`store.base.Store`)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from jobtrail.core.intake import Planner
from jobtrail.store.base import Store, StoreError


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite:///PATH` URL (None for another scheme, or no path)."""
    if not url.startswith("sqlite:///"):
        return None
    return url[len("sqlite:///") :].split("?", 1)[0] or None


def open_store(url: str, planner: Planner) -> Store:
    """A store for `sqlite:///PATH`, `postgresql://...` or `memory://`; not yet opened."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        from jobtrail.store.sqlite import SQLiteStore

        # As in SQLAlchemy: sqlite:///relative/path.db and sqlite:////absolute/path.db
        path = sqlite_path(url)
        if not path:
            raise StoreError("a sqlite store URL needs a path: sqlite:///PATH")
        options = parse_qs(parts.query)
        synchronous = options.get("synchronous", ["full"])[0].lower()
        return SQLiteStore(path, planner, synchronous=synchronous)
    if parts.scheme in ("postgresql", "postgres"):
        try:
            from jobtrail.store.postgres import PostgresStore
        except ImportError as exc:  # asyncpg comes with the `postgres` extra
            raise StoreError("PostgreSQL needs asyncpg: pip install 'jobtrail[postgres]'") from exc
        return PostgresStore(url, planner)
    if parts.scheme == "memory":
        from jobtrail.store.memory import MemoryStore

        return MemoryStore(planner)
    raise StoreError(
        f"unsupported store URL scheme {parts.scheme!r}; use sqlite:///, postgresql:// or memory://"
    )
