"""The SQLite writer process: the one connection that writes, in a process of its own.

`python -I store/sqlite/writer.py PATH [PRAGMA ...]` reads messages on stdin and answers
each on stdout, in order: a frame is an 8-byte big-endian length and a pickle. Each batch
is one `BEGIN IMMEDIATE ... COMMIT`. The parent (store/sqlite/process.py) is the only peer.

The writer numbers what it writes: a batch's deliveries and events arrive without ids and
get the next ones inside the transaction, so the log stays gapless whatever the parent
assumed. It also decides which attempt records still hold their item (a guarded
statement that changes no row refuses the record and its event). And it remembers where
the log ended after its last commit: if the file ends elsewhere when the next batch
begins, another process wrote (say `jobtrail outbox replay` beside `jobtrail serve`), the
batch is refused unwritten (`ForeignWrite`) and the parent plans again from the file.

Why a process: a writer thread shares the GIL with the event loop. Each time a statement
returns from SQLite the thread must win the GIL back from a busy loop, so a transaction
took several times its own CPU time, and the loop sat idle waiting for commits
(bench/ingest). A process has its own interpreter.

This module imports only the standard library (it runs as a script, isolated from the
environment and the working directory), so the process starts in tens of milliseconds.
It stops at end of input (the parent closed the pipe, or died), after the transaction in
hand; SIGINT and SIGTERM are ignored, since a Ctrl-C or a service manager's stop reaches
the whole process group and the parent decides when to stop.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, NamedTuple, TypeVar

FRAME = struct.Struct("!Q")
T = TypeVar("T")
Row = tuple[Any, ...]

# Where the log ends: the last delivery id, the last event sequence number, and the last
# job removed by retention (which another connection does: store/sqlite/store.py).
LAST_IDS = (
    "SELECT (SELECT COALESCE(MAX(id), 0) FROM deliveries), (SELECT COALESCE(MAX(seq), 0) FROM event_log), "
    "(SELECT COALESCE(MAX(rid), 0) FROM removed_jobs)"
)
# Which of a batch's new jobs were removed by retention (their keys as a JSON array of pairs).
REMOVED = (
    "SELECT r.provider, r.job_id FROM json_each(?) AS k JOIN removed_jobs AS r "
    "ON r.provider = json_extract(k.value, '$[0]') AND r.job_id = json_extract(k.value, '$[1]')"
)


class Batch(NamedTuple):
    """One transaction's work, as SQL and plain rows (built by the parent), in the order
    it is written.

    `new_jobs`: an INSERT whose rows must not exist yet, nor have been removed by
    retention (`RowsExist` otherwise; rows begin with provider and job id).
    `attempts`: each a list of (statement, params); the first must change a row, or the
    attempt is refused and the rest of it skipped. `deliveries`: an INSERT taking
    (id, *row), ids numbered here. `events`: an INSERT taking (seq, provider, job_id,
    type, source, at, data, delivery_id, fingerprint), from rows of (provider, job_id,
    type, source, at, data, delivery position, fingerprint, attempt position); the event
    of a refused attempt is dropped. `writes`: statements and their rows. `queries`:
    statements whose rows are returned, one list each.
    """

    new_jobs: tuple[str, list[Row]]
    attempts: list[list[tuple[str, Row]]]
    deliveries: tuple[str, list[Row]]
    events: tuple[str, list[Row]]
    writes: list[tuple[str, list[Row]]]
    queries: list[tuple[str, Row]]


class Written(NamedTuple):
    """What a committed batch was given: its first delivery id and event sequence number,
    the positions of its refused attempts, and its queries' rows."""

    first_delivery: int
    first_seq: int
    refused: list[int]
    rows: list[list[Any]]


class ForeignWrite(Exception):
    """The log does not end where this writer left it: another process wrote. Nothing
    was written."""


class RowsExist(Exception):
    """Rows of `Batch.new_jobs` already exist, or their jobs were removed. Nothing was
    written."""


class Conflict(Exception):
    """An event is logged already (its fingerprint is taken): the batch was planned on
    stale jobs. Nothing was written."""


class Skipped(Exception):
    """Refused unwritten: a batch sent before it failed (see `serve`)."""


class Writer:
    """The connection and where the log ended after its last commit."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.tail: Row = tuple(conn.execute(LAST_IDS).fetchone())

    def write(self, batch: Batch) -> Written:
        """Write `batch` in one transaction (see `Batch`)."""
        written, self.tail = transaction(self.conn, lambda conn: _steps(conn, batch, self.tail))
        return written

    def refresh(self) -> None:
        """After a foreign write: take the file's end as it is now."""
        self.tail = tuple(self.conn.execute(LAST_IDS).fetchone())


def _steps(conn: sqlite3.Connection, batch: Batch, tail: Row) -> tuple[Written, Row]:
    last_delivery, last_seq, last_removal = ends = conn.execute(LAST_IDS).fetchone()
    if ends != tail:
        raise ForeignWrite(f"the log ends at {ends}, not {tuple(tail)}: another writer")
    insert, rows = batch.new_jobs
    if rows:  # first: a row wrongly taken for new must be the first thing to fail
        if last_removal:
            keys = json.dumps([row[:2] for row in rows])
            if gone := conn.execute(REMOVED, (keys,)).fetchall():
                raise RowsExist(f"{len(gone)} jobs planned as new were removed by retention")
        try:
            conn.executemany(insert, rows)
        except sqlite3.IntegrityError as exc:
            raise RowsExist(str(exc)) from None
    refused: list[int] = []
    for position, steps in enumerate(batch.attempts):
        guard, params = steps[0]
        if conn.execute(guard, params).rowcount == 0:
            refused.append(position)
            continue
        for statement, params in steps[1:]:
            conn.execute(statement, params)
    insert, rows = batch.deliveries
    first_delivery = last_delivery + 1
    if rows:
        conn.executemany(insert, [(first_delivery + n, *row) for n, row in enumerate(rows)])
    insert, rows = batch.events
    seq = last_seq
    numbered = []
    for provider, job_id, kind, source, at, data, delivery, fingerprint, attempt in rows:
        if attempt is not None and refused and attempt in refused:
            continue
        seq += 1
        delivery_id = None if delivery is None else first_delivery + delivery
        numbered.append((seq, provider, job_id, kind, source, at, data, delivery_id, fingerprint))
    if numbered:
        try:
            conn.executemany(insert, numbered)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from None
    for statement, rows in batch.writes:
        if rows:
            conn.executemany(statement, rows)
    found = [conn.execute(statement, params).fetchall() for statement, params in batch.queries]
    written = Written(first_delivery, last_seq + 1, refused, found)
    return written, (last_delivery + len(batch.deliveries[1]), seq, last_removal)


def transaction(conn: sqlite3.Connection, steps: Callable[[sqlite3.Connection], T]) -> T:
    """`steps(conn)` inside `BEGIN IMMEDIATE ... COMMIT`; rolled back if anything fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = steps(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def connect(path: str, pragmas: Sequence[str]) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for pragma in pragmas:
            conn.execute(pragma)
    except BaseException:
        conn.close()
        raise
    return conn


def read_frame(stream: BinaryIO) -> Any:
    """The next message, or None at end of input."""
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (size,) = FRAME.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)  # noqa: S301 - from the parent that started us, over our own pipe


def frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(body)) + body


def failure(exc: Exception) -> tuple[Any, ...]:
    """("error", kind, message, SQLite error name or None): how a failed batch is answered."""
    return ("error", type(exc).__name__, str(exc), getattr(exc, "sqlite_errorname", None))


def serve(writer: Writer, requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer each message, in order: ("write", batch) with ("ok", Written) or a
    `failure`; ("resume",) with ("ok", None).

    After a batch fails, every later batch is refused (kind "Skipped", nothing written)
    until ("resume",): the parent sends batches ahead, each planned on top of the ones
    before it, so once one fails those behind it rest on something that did not happen.
    """
    failed = False
    while (message := read_frame(requests)) is not None:
        if message[0] == "resume":
            failed = False
            reply: tuple[Any, ...] = ("ok", None)
        elif failed:
            reply = ("error", "Skipped", "an earlier batch failed; this one was planned on it", None)
        else:
            try:
                reply = ("ok", tuple(writer.write(Batch(*message[1]))))
            except Exception as exc:  # answered, not fatal: the parent plans again
                failed = True
                if isinstance(exc, ForeignWrite):
                    writer.refresh()
                reply = failure(exc)
        replies.write(frame(reply))
        replies.flush()


def main(argv: Sequence[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The protocol owns fd 1; anything printed by accident goes to stderr instead.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    path, *pragmas = argv
    try:
        writer = Writer(connect(path, pragmas))
    except sqlite3.Error as exc:
        replies.write(frame(("error", "OperationalError", f"cannot open {path}: {exc}", None)))
        replies.flush()
        return 1
    replies.write(frame(("ok", None)))  # ready
    replies.flush()
    try:
        serve(writer, sys.stdin.buffer, replies)
    except BrokenPipeError:  # the parent is gone; the transaction in hand is committed
        pass
    finally:
        writer.conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
