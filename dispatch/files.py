"""Writing a streamed result to disk: constant memory, sha256 while streaming, and the
final name only once the file is complete and on stable storage.

`save_stream` writes `<dest>.part`, hashes each chunk as it goes, checks the length
against what the server announced and against a maximum, fsyncs the file, renames it to
`dest` and fsyncs the directory. On any failure the part file is removed and the error
raised: a partial file is never presented as done. (Resuming with HTTP Range belongs to
the download worker, which keeps its part file.)
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_NAME = 120
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


def download_path(data_dir: Path, provider: str, job_id: str, file_name: str) -> Path:
    """`<data dir>/downloads/<provider>/<job id>/<file name>`, every part sanitized."""
    return (
        data_dir
        / "downloads"
        / safe_name(provider, "provider")
        / safe_name(job_id, "job")
        / safe_name(file_name, "result")
    )


async def save_stream(
    chunks: AsyncIterable[bytes],
    dest: Path,
    *,
    expected_bytes: int | None = None,
    max_bytes: int | None = None,
) -> SavedFile:
    """Stream `chunks` into `dest` (see the module docstring)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(part, "wb") as out:  # noqa: ASYNC230 - short writes to a local disk, measured in bench/
            async for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise SizeError(f"the result is larger than the {max_bytes}-byte limit")
                digest.update(chunk)
                out.write(chunk)
            if expected_bytes is not None and size != expected_bytes:
                raise SizeError(f"got {size} bytes where the server announced {expected_bytes}")
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return SavedFile(dest, size, digest.hexdigest())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
