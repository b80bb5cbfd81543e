"""The SQLite writer process: the one connection that writes, in a process of its own.

`python -I store/sqlite_writer.py PATH [PRAGMA ...]` reads messages on stdin and answers
each on stdout, in order: a frame is an 8-byte big-endian length and a pickle. Each batch
is one `BEGIN IMMEDIATE ... COMMIT`. The parent (store/sqlite_process.py) is the only peer.

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


class Batch(NamedTuple):
    """One transaction's work, as SQL and plain rows (built by the parent).

    `guard`: a query and the row it must return, or nothing is written (the log does not
    end where the parent planned it to). `new`: an INSERT whose rows must not exist yet.
    `writes`: statements and their rows, in order. `queries`: statements whose rows are
    returned, one list each.
    """

    guard: tuple[str, tuple[Any, ...]]
    new: tuple[str, list[tuple[Any, ...]]]
    writes: list[tuple[str, list[tuple[Any, ...]]]]
    queries: list[tuple[str, tuple[Any, ...]]]


class ForeignWrite(Exception):
    """The guard failed: another process wrote to the log. Nothing was written."""


class RowsExist(Exception):
    """Rows of `Batch.new` already exist. Nothing was written."""


class Skipped(Exception):
    """Refused unwritten: a batch sent before it failed (see `serve`)."""


def write(conn: sqlite3.Connection, batch: Batch) -> list[list[Any]]:
    """Write `batch` in one transaction; return the rows of each of its queries."""

    def steps(conn: sqlite3.Connection) -> list[list[Any]]:
        query, expected = batch.guard
        if tuple(conn.execute(query).fetchone()) != tuple(expected):
            raise ForeignWrite("another writer changed the log")
        insert, rows = batch.new
        if rows:  # first: a row wrongly taken for new must be the first thing to fail
            try:
                conn.executemany(insert, rows)
            except sqlite3.IntegrityError as exc:
                raise RowsExist(str(exc)) from None
        for statement, rows in batch.writes:
            if rows:
                conn.executemany(statement, rows)
        return [conn.execute(statement, params).fetchall() for statement, params in batch.queries]

    return transaction(conn, steps)


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


def serve(conn: sqlite3.Connection, requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer each message, in order: ("write", batch) with ("ok", rows) or ("error",
    kind, message); ("resume",) with ("ok", None).

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
            reply = ("error", "Skipped", "an earlier batch failed; this one was planned on it")
        else:
            try:
                reply = ("ok", write(conn, Batch(*message[1])))
            except Exception as exc:  # answered, not fatal: the parent plans again
                failed = True
                reply = ("error", type(exc).__name__, str(exc))
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
        conn = connect(path, pragmas)
    except sqlite3.Error as exc:
        replies.write(frame(("error", "OperationalError", f"cannot open {path}: {exc}")))
        replies.flush()
        return 1
    replies.write(frame(("ok", None)))  # ready
    replies.flush()
    try:
        serve(conn, sys.stdin.buffer, replies)
    except BrokenPipeError:  # the parent is gone; the transaction in hand is committed
        pass
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
