"""One `jobtrail serve` per SQLite file: an exclusive `flock` on `<database>.lock`.

The lock belongs to the server's process and ends with it, however it ends (a SIGKILL
too), so there is nothing stale to clean up. Commands that only read, or write beside a
server (`jobtrail outbox replay`), do not take it. The file holds the server's pid, so a
second server can say which process holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from jobtrail.store.base import StoreLocked


class ServerLock:
    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise `StoreLocked` naming the process that holds it. Blocking
        (briefly): run it in a thread."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreLocked(
                f"another jobtrail serve (pid {holder}) is running on {self.path.with_suffix('')}; "
                "stop it first, or give this one its own data directory"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing drops the lock; the file stays, harmlessly
            self._fd = None
