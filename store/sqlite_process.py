"""The event loop's handle on the SQLite writer process (store/sqlite_writer.py).

`await writer.write(batch)` sends one batch and returns its query rows once it is
committed. Several may be in flight; they are answered in the order sent, and after one
fails the writer refuses the rest (`Skipped`) until `resume()`. A caller that stops
waiting does not stop its batch (a transaction is never cut in half). If the process dies, every batch
in flight fails with `StoreError` (each was committed or rolled back as a whole; the
store's committer plans again from the database) and the next write starts a new process.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import pickle
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from store.base import StoreError
from store.sqlite_writer import FRAME, Batch, ForeignWrite, RowsExist, Skipped, frame

log = structlog.get_logger(__name__)

WRITER = Path(__file__).with_name("sqlite_writer.py")  # run as a script: it needs only the stdlib
STOP_TIMEOUT = 30.0  # seconds for the writer to finish its last transaction at close
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
    "Skipped": Skipped,
}


class WriterProcess:
    """One writer process per store, started by `open` and again after a crash."""

    def __init__(self, path: Path, pragmas: Sequence[str]) -> None:
        self.path = path
        self._pragmas = tuple(pragmas)
        self._child: _Child | None = None
        self._starting = asyncio.Lock()
        self._open = False

    @property
    def pid(self) -> int | None:
        """The writer process's id while it runs."""
        return None if self._child is None or self._child.gone else self._child.proc.pid

    async def open(self) -> None:
        self._open = True
        await self._running()

    async def _running(self) -> _Child:
        async with self._starting:
            if self._child is None or self._child.gone:
                self._child = await _Child.start(self.path, self._pragmas)
                log.debug("sqlite_writer_started", pid=self._child.proc.pid, path=str(self.path))
            return self._child

    async def write(self, batch: Batch) -> list[list[Any]]:
        """Commit `batch` in the writer process; its queries' rows."""
        if not self._open:
            raise StoreError("the store is not open")
        child = self._child if self._child is not None and not self._child.gone else await self._running()
        result: list[list[Any]] = await child.send(("write", tuple(batch)))
        return result

    async def resume(self) -> None:
        """Let the writer take batches again after one failed (it refuses them until then)."""
        if self._open and self._child is not None and not self._child.gone:
            await self._child.send(("resume",))

    async def close(self) -> None:
        """Let the writer finish what it was sent, then stop it."""
        self._open = False
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

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.gone = False
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._replies = asyncio.create_task(self._read_replies(), name="sqlite-writer-replies")

    @classmethod
    async def start(cls, path: Path, pragmas: Sequence[str]) -> _Child:
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
        child = cls(proc)
        ready = asyncio.get_running_loop().create_future()
        child._waiting.append(ready)  # the writer's first frame says it has opened the file
        try:
            await ready
        except BaseException:
            await child.stop()
            raise
        return child

    def send(self, message: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        if self.gone:
            future.set_exception(StoreError("the SQLite writer process has exited"))
            return future
        assert self.proc.stdin is not None
        self._waiting.append(future)
        self.proc.stdin.write(frame(message))
        return future

    async def _read_replies(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                head = await stdout.readexactly(FRAME.size)
                body = await stdout.readexactly(FRAME.unpack(head)[0])
                reply = pickle.loads(body)  # noqa: S301 - from the process we started, over its own pipe
                future = self._waiting.popleft()
                if future.done():  # its caller stopped waiting
                    continue
                if reply[0] == "ok":
                    future.set_result(reply[1])
                else:
                    _, kind, message = reply
                    future.set_exception(_ERRORS.get(kind, StoreError)(f"SQLite write failed: {message}"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # end of output: the process is gone
        except Exception:
            log.exception("sqlite_writer_garbled")  # cannot happen but by a bug: stop it
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        finally:
            self.gone = True
            code = await self.proc.wait()
            if self._waiting:
                log.error("sqlite_writer_exited", status=code, in_flight=len(self._waiting))
            while self._waiting:
                future = self._waiting.popleft()
                if not future.done():
                    future.set_exception(StoreError(f"the SQLite writer process exited (status {code})"))

    async def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await asyncio.wait({self._replies})
        except TimeoutError:
            log.error("sqlite_writer_stuck", pid=self.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await asyncio.wait({self._replies})
