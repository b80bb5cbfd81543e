"""Moving a whole log between stores (`jobtrail store copy --from URL --to URL`): SQLite
to PostgreSQL when a team outgrows one machine, and back.

Every table (`rows.TABLES`) is copied in key order, in batches, keys and all (the event
fingerprints too, so a redelivered webhook is still a duplicate afterwards). The target
must be empty. At the end the target is read back whole: its row counts and a checksum
of its rows must equal the source's, or the copy is reported failed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from jobtrail.store.base import Store, StoreError
from jobtrail.store.rows import TABLES, canonical

BATCH = 2000


class TargetNotEmpty(StoreError):
    """The target store already holds a log: a copy never mixes two."""


class CopyMismatch(StoreError):
    """The target, read back, is not what was read from the source."""


@dataclass(frozen=True, slots=True)
class Copied:
    table: str
    rows: int
    sha256: str


Progress = Callable[[str, int, int], None]  # (table, rows copied, rows in the source)


async def copy(source: Store, target: Store, progress: Progress, batch: int = BATCH) -> list[Copied]:
    """Copy every table from `source` into `target`, then check the target."""
    for table in TABLES:
        if await target.count(table):
            raise TargetNotEmpty(
                f"the target store is not empty (its {table} table has rows); copy into an empty one"
            )
    copied = []
    for table in TABLES:
        total = await source.count(table)
        digest = hashlib.sha256()
        done, after = 0, None
        while found := await source.dump(table, after, batch):
            await target.load(table, found)
            for row in found:
                digest.update(canonical(row))
            done += len(found)
            after = found[-1][0]
            progress(table, done, total)
        copied.append(Copied(table, done, digest.hexdigest()))
    for expected in copied:
        held = await _read_back(target, expected.table, batch)
        if held != expected:
            raise CopyMismatch(
                f"{expected.table}: the target holds {held.rows} rows (sha256 {held.sha256[:12]}), "
                f"the source gave {expected.rows} (sha256 {expected.sha256[:12]})"
            )
    return copied


async def _read_back(store: Store, table: str, batch: int) -> Copied:
    digest = hashlib.sha256()
    done, after = 0, None
    while found := await store.dump(table, after, batch):
        for row in found:
            digest.update(canonical(row))
        done += len(found)
        after = found[-1][0]
    return Copied(table, done, digest.hexdigest())
