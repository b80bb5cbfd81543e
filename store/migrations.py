"""Schema migrations as numbered SQL files: `store/sql/<dialect>/NNNN_name.sql`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load(dialect: str) -> list[Migration]:
    """Every migration of a dialect in version order; versions must be 1, 2, 3, ..."""
    folder = resources.files("jobtrail.store") / "sql" / dialect
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations for {dialect} are not numbered 1..n")
    return found


def latest(dialect: str) -> int:
    return len(load(dialect))
