"""Writing a streamed result to disk: constant memory, sha256 while streaming, and the
final name only once the file is complete and on stable storage.

`save_stream` writes `<dest>.part`, hashes each chunk as it goes, checks the length
against what the server announced and against a maximum, fsyncs the file, renames it to
`dest` and fsyncs the directory. On failure the error is raised and the part file is
removed, or kept for a resumed attempt (`keep_part`): a partial file is never presented
under the final name. Every call that touches the disk runs on a worker thread: an fsync
or a slow file system never holds the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import unicodedata
from collections import deque
from collections.abc import AsyncIterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAX_NAME = 120
FLUSH_BYTES = 1024 * 1024
DEPTH = 4
WRITEBACK_EVERY = 16 * 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class SizeError(Exception):
    """The stream was longer than allowed, or not as long as announced."""


@dataclass(frozen=True, slots=True)
class SavedFile:
    path: Path
    bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "bytes": self.bytes, "sha256": self.sha256}


def safe_name(name: str, fallback: str = "result") -> str:
    """One path component that cannot escape its directory or hide control characters."""
    text = unicodedata.normalize("NFKC", name)
    text = _UNSAFE.sub("_", text).strip("._")
    return text[:MAX_NAME] or fallback


def unique_name(name: str, fallback: str) -> str:
    """`name` itself where it is a safe, lower-case path component; else its safe form, a
    `~` and a hash of `name` (`a b` -> `a_b~<16 hex>`). No two names give one result: a
    name kept as it is has no `~` (safe_name removes it), and a hashed one differs from
    every other by its hash. Lower case only as it is, so that a case-insensitive file
    system cannot fold two names together either."""
    safe = safe_name(name, fallback)
    if safe == name and name == name.lower():
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{safe[: MAX_NAME - 17]}~{digest}"


def download_path(data_dir: Path, provider: str, job_id: str, file_name: str) -> Path:
    """`<data dir>/downloads/<provider>/<job id>/<file name>`: a directory per job that no
    other job id shares (`unique_name`), the file name made safe (the caller makes it
    unique within its job)."""
    return (
        data_dir
        / "downloads"
        / safe_name(provider, "provider")
        / unique_name(job_id, "job")
        / safe_name(file_name, "result")
    )


async def save_stream(
    chunks: AsyncIterable[bytes],
    dest: Path,
    *,
    expected_bytes: int | None = None,
    max_bytes: int | None = None,
    resume_from: int = 0,
    keep_part: bool = False,
) -> SavedFile:
    """Stream `chunks` into `dest` (see the module docstring).

    `resume_from` > 0 appends to the part file kept by an earlier attempt, after hashing
    its first `resume_from` bytes; `expected_bytes` is the whole file's length. With
    `keep_part`, a failed attempt leaves its part file for the next one to resume.
    Chunks are gathered into batches of `FLUSH_BYTES`; each batch is hashed on one worker
    thread and written on another while the next batches are read from the network, so
    the three overlap, memory stays at about `DEPTH` batches, and the event loop never
    blocks on the disk (bench/download).
    """
    loop = asyncio.get_running_loop()
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    size = resume_from
    try:
        out = await loop.run_in_executor(None, _open_part, part, digest, resume_from)
        pipeline = _Pipeline(out, digest)
        batch: list[bytes] = []
        batched = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise SizeError(f"the result is larger than the {max_bytes}-byte limit")
                batch.append(chunk)
                batched += len(chunk)
                if batched >= FLUSH_BYTES:
                    await pipeline.push(batch)
                    batch, batched = [], 0
            await pipeline.push(batch)
            batch = []
            await pipeline.drain()
            if expected_bytes is not None and size != expected_bytes:
                raise SizeError(f"got {size} bytes where the server announced {expected_bytes}")
            await loop.run_in_executor(None, _seal, out)
        except BaseException:
            # Let the worker threads finish before the file closes, and keep every byte
            # received for a resumed attempt.
            with contextlib.suppress(Exception):
                await pipeline.drain()
                if keep_part and batch:
                    await pipeline.push(batch)
                    await pipeline.drain()
            raise
        finally:
            pipeline.close()
            out.close()
        await loop.run_in_executor(None, _publish, part, dest)
    except BaseException:
        if not keep_part:
            # shielded: a cancel must not leave the part file behind
            await asyncio.shield(loop.run_in_executor(None, _remove, part))
        raise
    return SavedFile(dest, size, digest.hexdigest())


class _Pipeline:
    """Hashes and writes batches in order on two threads of their own, up to `DEPTH`
    batches behind the network read: reading, hashing and writing overlap."""

    def __init__(self, out: BinaryIO, digest: Any) -> None:
        self.out, self.digest = out, digest
        self.hasher = ThreadPoolExecutor(1, "jobtrail-sha256")
        self.writer = ThreadPoolExecutor(1, "jobtrail-write")
        self.inflight: deque[tuple[asyncio.Future[None], asyncio.Future[None]]] = deque()

    async def push(self, batch: list[bytes]) -> None:
        if batch:
            wrote = asyncio.wrap_future(self.writer.submit(_write, self.out, batch))
            hashed = asyncio.wrap_future(self.hasher.submit(_hash, self.digest, batch))
            self.inflight.append((wrote, hashed))
        while len(self.inflight) > DEPTH:
            await self._oldest()

    async def drain(self) -> None:
        while self.inflight:
            await self._oldest()

    async def _oldest(self) -> None:
        wrote, hashed = self.inflight.popleft()
        try:
            await wrote
        finally:
            await hashed

    def close(self) -> None:
        self.hasher.shutdown(wait=False)
        self.writer.shutdown(wait=False)


async def part_size(dest: Path) -> int:
    """How much of `dest` an earlier attempt left in its part file (0 if none)."""
    return await asyncio.get_running_loop().run_in_executor(None, _part_size, dest)


async def drop_part(dest: Path) -> None:
    """Remove the part file an earlier attempt left for `dest`, if any."""
    await asyncio.get_running_loop().run_in_executor(None, _remove, dest.with_name(dest.name + ".part"))


def _part_size(dest: Path) -> int:
    try:
        return dest.with_name(dest.name + ".part").stat().st_size
    except FileNotFoundError:
        return 0


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _open_part(part: Path, digest: Any, resume_from: int) -> BinaryIO:
    part.parent.mkdir(parents=True, exist_ok=True)
    if not resume_from:
        return open(part, "wb", buffering=0)
    out = open(part, "r+b", buffering=0)  # noqa: SIM115 - closed by save_stream
    out.truncate(resume_from)
    while block := out.read(1 << 20):
        digest.update(block)
    return out


def _write(out: BinaryIO, chunks: list[bytes]) -> None:
    """One writev per batch (no copy, few system calls; the file is unbuffered), then ask
    the kernel to start writing what is behind us to disk, so the final fsync has little
    left to wait for and a large file does not fill the page cache."""
    fd = out.fileno()
    pending = [memoryview(c) for c in chunks if c]
    while pending:
        written = os.writev(fd, pending[:1024])
        while pending and written >= len(pending[0]):
            written -= len(pending[0])
            pending.pop(0)
        if written:
            pending[0] = pending[0][written:]
    if hasattr(os, "posix_fadvise"):
        end = os.lseek(fd, 0, os.SEEK_CUR)
        if end >= WRITEBACK_EVERY and end % WRITEBACK_EVERY < FLUSH_BYTES * 2:
            os.posix_fadvise(fd, 0, end - FLUSH_BYTES, os.POSIX_FADV_DONTNEED)


def _hash(digest: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        digest.update(chunk)


def _seal(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


def _publish(part: Path, dest: Path) -> None:
    """The complete file under its final name, the rename itself on stable storage."""
    os.replace(part, dest)
    _fsync_dir(dest.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
