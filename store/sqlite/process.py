"""The event loop's handle on the SQLite writer process (store/sqlite/writer.py).

`await writer.ready()` makes sure a writer runs (starting one if needed); `await
writer.write(batch)` sends one batch and returns what it was given (`Written`) once it is
committed. Several may be in flight; they are answered in the order sent, and after one
fails the writer refuses the rest (`Skipped`) until `resume()`. A caller that stops
waiting does not stop its batch (a transaction is never cut in half).

If the process dies, every batch in flight fails with `OutcomeUnknown` (each was
committed or rolled back as a whole, and nobody can tell which), and a new process is
started at once. A writer that answers nothing for `stuck_after` seconds while batches
wait is killed, with the same outcome: a hung disk or a stopped process cannot hold
intake forever. `problem` says why no writer is ready, for `/readyz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import pickle
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from jobtrail.store.base import OutcomeUnknown, StoreClosed, StoreError, StoreUnavailable
from jobtrail.store.sqlite.writer import (
    FRAME,
    Batch,
    Conflict,
    ForeignWrite,
    RowsExist,
    Skipped,
    Written,
    frame,
)

log = structlog.get_logger(__name__)

WRITER = Path(__file__).with_name("writer.py")  # run as a script: it needs only the stdlib
STOP_TIMEOUT = 30.0  # seconds for the writer to finish its last transaction at close
STUCK_AFTER = 30.0  # seconds without an answer while batches wait: the writer is killed
START_BACKOFF = 1.0  # seconds before another start after one failed
# The request pipe's capacity. A batch sent while the writer is busy goes into the pipe
# as far as it fits; the rest waits in the event loop's transport until the loop is next
# idle, so while the loop plans the batch after it, the writer sits on a partial frame.
# Linux's default, 64 KiB, holds about 80 stream events: bench/sse hands over about 2,400
# per read (1.9 MB) and ran at 13,000-14,000 events/s, against 22,000-25,000 with 1 MiB
# (the most Linux grants a process without CAP_SYS_RESOURCE by default:
# /proc/sys/fs/pipe-max-size).
PIPE_BYTES = 1 << 20
_ERRORS: dict[str, type[Exception]] = {
    "ForeignWrite": ForeignWrite,
    "RowsExist": RowsExist,
    "Conflict": Conflict,
    "Skipped": Skipped,
}
# SQLite errors that say "not now" (disk full, I/O, locked, read-only): the write can be
# tried again later, so they answer 503, not 500.
_TRANSIENT = (
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_READONLY",
    "SQLITE_CANTOPEN",
)


class NotSent(StoreUnavailable):
    """No writer could take the batch (none running, none could be started): it was not
    sent, so nothing of it was written."""


def error_for(kind: str, message: str, sqlite_name: str | None) -> Exception:
    """The exception a failed batch raises in the parent."""
    if kind in _ERRORS:
        return _ERRORS[kind](message)
    if sqlite_name is not None and sqlite_name.startswith(_TRANSIENT):
        return StoreUnavailable(f"SQLite cannot write now: {message}", retry_after=5.0)
    return StoreError(f"SQLite write failed: {message}")


class WriterProcess:
    """One writer process per store: started by `ready`, again at once after it dies."""

    def __init__(
        self,
        path: Path,
        pragmas: Sequence[str],
        *,
        on_start: Callable[[], None] = lambda: None,
        stuck_after: float = STUCK_AFTER,
    ) -> None:
        self.path = path
        self._pragmas = tuple(pragmas)
        self._on_start = on_start
        self.stuck_after = stuck_after
        self._child: _Child | None = None
        self._starting = asyncio.Lock()
        self._open = False
        self._failed_start: tuple[float, str] | None = None
        self._last_exit: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def pid(self) -> int | None:
        """The writer process's id while it runs."""
        return None if self._child is None or self._child.gone else self._child.proc.pid

    @property
    def problem(self) -> str | None:
        """Why no writer is ready to take a batch now, or None."""
        if not self._open:
            return "the store is not open"
        child = self._child
        if child is None or child.gone:
            if self._failed_start is not None:
                return f"the SQLite writer cannot start: {self._failed_start[1]}"
            return f"the SQLite writer is restarting ({self._last_exit or 'not started'})"
        waited = child.oldest_wait()
        if waited > min(5.0, self.stuck_after):
            return f"the SQLite writer has not answered for {waited:.0f} s"
        return None

    async def open(self) -> None:
        self._open = True
        self._tasks.add(asyncio.create_task(self._watch(), name="sqlite-writer-watchdog"))
        await self.ready()

    async def ready(self) -> None:
        """A writer is running (started here if need be); `StoreUnavailable` if it
        cannot be started now."""
        child = self._child
        if child is not None and not child.gone:
            return
        if not self._open:
            raise StoreClosed("the store is not open")
        async with self._starting:
            if self._child is not None and not self._child.gone:
                return
            if self._failed_start is not None and time.monotonic() - self._failed_start[0] < START_BACKOFF:
                raise NotSent(f"the SQLite writer cannot start: {self._failed_start[1]}")
            try:
                self._child = await _Child.start(self.path, self._pragmas, self._exited)
            except (OSError, StoreError) as exc:
                self._failed_start = (time.monotonic(), str(exc))
                log.error("sqlite_writer_start_failed", path=str(self.path), error=str(exc))
                raise NotSent(f"the SQLite writer cannot start: {exc}") from exc
            self._failed_start = None
            log.debug("sqlite_writer_started", pid=self._child.proc.pid, path=str(self.path))
            self._on_start()

    def _exited(self, status: int, in_flight: int) -> None:
        """The process is gone: start another at once (unless the store is closing)."""
        self._last_exit = f"the last one exited with status {status}"
        if in_flight:
            log.error("sqlite_writer_exited", status=status, in_flight=in_flight)
        if self._open:
            task = asyncio.create_task(self._restart(), name="sqlite-writer-restart")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _restart(self) -> None:
        while self._open and (self._child is None or self._child.gone):
            try:
                await self.ready()
            except StoreError:
                await asyncio.sleep(START_BACKOFF)

    async def _watch(self) -> None:
        """Kill a writer that answers nothing for `stuck_after` seconds while batches wait."""
        while True:
            await asyncio.sleep(min(1.0, self.stuck_after / 4))
            child = self._child
            if child is not None and not child.gone and child.oldest_wait() > self.stuck_after:
                log.error("sqlite_writer_stuck", pid=child.proc.pid, seconds=round(child.oldest_wait(), 1))
                child.kill()

    async def write(self, batch: Batch) -> Written:
        """Commit `batch` in the running writer (`ready` first); what it was given."""
        child = self._child
        if child is None or child.gone:
            raise NotSent("the SQLite writer is not running; the batch was not sent")
        reply = await child.send(("write", tuple(batch)))
        return Written(*reply)

    async def resume(self) -> None:
        """Let the writer take batches again after one failed (it refuses them until
        then). A writer that is gone needs no resuming: the next one starts clean."""
        child = self._child
        if self._open and child is not None and not child.gone:
            with contextlib.suppress(StoreError):
                await child.send(("resume",))

    async def close(self) -> None:
        """Let the writer finish what it was sent, then stop it."""
        self._open = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._child is not None:
            await self._child.stop()
            self._child = None


def _widen(pipe: asyncio.StreamWriter | None) -> None:
    """Raise the pipe's capacity to `PIPE_BYTES` where the system allows (Linux); else keep
    its default, which is slower for large batches, not wrong."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if pipe is None or setpipe is None:
        return
    try:
        fcntl.fcntl(pipe.get_extra_info("pipe").fileno(), setpipe, PIPE_BYTES)
    except OSError as exc:  # EPERM: above pipe-max-size, or the user's pipe pages spent
        log.info("sqlite_writer_pipe_default", wanted=PIPE_BYTES, reason=str(exc))


class _Child:
    """One writer process and the replies it owes, in order."""

    def __init__(self, proc: asyncio.subprocess.Process, exited: Callable[[int, int], None]) -> None:
        self.proc = proc
        self.gone = False
        self._exited = exited
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._replies = asyncio.create_task(self._read_replies(), name="sqlite-writer-replies")

    @classmethod
    async def start(cls, path: Path, pragmas: Sequence[str], exited: Callable[[int, int], None]) -> _Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # isolated: the standard library only, nothing from the environment or cwd
            str(WRITER),
            str(path),
            *pragmas,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        _widen(proc.stdin)
        child = cls(proc, lambda status, in_flight: None)
        ready = asyncio.get_running_loop().create_future()
        child._waiting.append((ready, time.monotonic()))  # the first frame says it opened the file
        try:
            await ready
        except BaseException:
            await child.stop()
            raise
        child._exited = exited
        return child

    def oldest_wait(self) -> float:
        """Seconds the oldest unanswered message has waited (0 when none)."""
        return time.monotonic() - self._waiting[0][1] if self._waiting else 0.0

    def send(self, message: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        if self.gone:
            future.set_exception(NotSent("the SQLite writer process has exited; the batch was not sent"))
            return future
        assert self.proc.stdin is not None
        self._waiting.append((future, time.monotonic()))
        self.proc.stdin.write(frame(message))
        return future

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def _read_replies(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                head = await stdout.readexactly(FRAME.size)
                body = await stdout.readexactly(FRAME.unpack(head)[0])
                reply = pickle.loads(body)  # noqa: S301 - from the process we started, over its own pipe
                future, _ = self._waiting.popleft()
                if future.done():  # its caller stopped waiting
                    continue
                if reply[0] == "ok":
                    future.set_result(reply[1])
                else:
                    future.set_exception(error_for(*reply[1:]))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # end of output: the process is gone
        except Exception:
            log.exception("sqlite_writer_garbled")  # cannot happen but by a bug: stop it
            self.kill()
        finally:
            self.gone = True
            code = await self.proc.wait()
            in_flight = len(self._waiting)
            while self._waiting:
                future, _ = self._waiting.popleft()
                if not future.done():
                    future.set_exception(
                        OutcomeUnknown(
                            f"the SQLite writer exited (status {code}) before answering: "
                            "the write may or may not have been committed; retry it"
                        )
                    )
            self._exited(code, in_flight)

    async def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await asyncio.wait({self._replies})
        except TimeoutError:
            log.error("sqlite_writer_stuck", pid=self.proc.pid)
            self.kill()
            await asyncio.wait({self._replies})
