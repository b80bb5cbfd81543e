"""Reads on the event loop's own SQLite connection, for as long as they are short.

Nearly every read is short: a job, its outbox, its events, a page of a listing through an
index. For those a reader thread costs the event loop more than the read itself: handing
a read over and being woken with its rows took ~0.1-0.15 ms of the loop's time, against
5-20 us for a job lookup's reads; a page of jobs cost the loop 1.71 ms through threads
against 1.53 ms all on the loop (bench/scale, one client).

What keeps the loop free:
- a read still running after `ON_LOOP` is stopped (SQLite's progress handler) and goes to
  a thread;
- a turn of the loop reads at most `TURN` here: the reads after that go to threads, so
  that many reads at once (250 event streams starting from the log's beginning) queue
  on the reader threads instead of holding up the loop one after the other;
- the connection never waits for a lock (busy timeout 0): a read that finds the database
  busy (a checkpoint starting the WAL over) goes to a thread, which may wait.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobtrail.store.base import StoreError

# At 1 ms, one page of jobs' outbox read in eight went over (a pause of the machine's, a
# collection) and was read twice.
ON_LOOP = 0.003
# bench/stream (250 streams starting at once), /healthz's worst meanwhile: 864 ms with no
# bound, 259-306 ms at 2 ms, 372 ms at 5 ms (reader threads only: 131-241 ms in the same
# runs). bench/scale, four clients on lists: p99 up to 12 ms at 2 ms, 10.7 ms at 5 ms (one
# run each; the machine's noise is of that size).
TURN = 0.003


class LoopReads:
    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, timeout=0)
        self._conn.execute("PRAGMA query_only=ON")
        self._conn.set_progress_handler(self._stopped, 1000)
        self._stop_at = 0.0
        self._spent = 0.0  # reading here, in this turn of the loop
        self._counting = False  # a new turn is due to start the count over
        self.sent_to_threads = 0

    def _stopped(self) -> bool:
        return time.perf_counter() > self._stop_at

    def read(self, query: str, params: Sequence[Any]) -> list[Any] | None:
        """The rows, or None: the read is one for a reader thread."""
        if self._spent >= TURN:
            self.sent_to_threads += 1
            return None
        began = time.perf_counter()
        self._stop_at = began + ON_LOOP
        try:
            return self._conn.execute(query, params).fetchall()
        except sqlite3.OperationalError:  # stopped, busy, or failed (the thread says which)
            self.sent_to_threads += 1
            return None
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite read failed: {exc}") from exc
        finally:
            self._spend(time.perf_counter() - began)

    def _spend(self, seconds: float) -> None:
        if not self._counting:
            self._counting = True
            asyncio.get_running_loop().call_soon(self._new_turn)  # runs in the loop's next turn
        self._spent += seconds

    def _new_turn(self) -> None:
        self._spent, self._counting = 0.0, False

    def close(self) -> None:
        self._conn.close()
