"""Fetching a job's result file: guarded, resumable, verified.

`Downloader.fetch(entry)` makes one attempt and returns its `Outcome`:

- the URL and every redirect are checked by the SSRF guard (dispatch/guard.py);
- the file streams to `<data dir>/downloads/<provider>/<job id>/<name>.part` and is
  renamed only when complete; a part file left by a broken attempt is resumed with
  `Range` when the server answers 206 for the right offset, and restarted when it does
  not support ranges (200);
- the length is checked against Content-Length / Content-Range and a maximum size;
- 403, 404 and 410 mean the URL expired: `details["expired"]` asks for a fresh URL;
- 416 for a part file means it is already complete or stale: it is dropped and fetched
  again from the start;
- 429/503 honour `Retry-After`; a full or unwritable disk is a failed attempt with the
  reason, retried later.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Collection
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp

from jobtrail.core.model import OutboxEntry, utcnow
from jobtrail.core.retry import retry_after_seconds
from jobtrail.dispatch.guard import GuardedResolver, Refused, check_url
from jobtrail.dispatch.schedule import Outcome
from jobtrail.runtime import files

MAX_REDIRECTS = 5
EXPIRED = (403, 404, 410)
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_INDEXED = re.compile(r"[0-9]+-")


def new_session(allow_hosts: Collection[str], limit: int) -> aiohttp.ClientSession:
    """A session whose every connection goes through the SSRF guard."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_hosts), limit=limit, use_dns_cache=False)
    return aiohttp.ClientSession(
        connector=connector, auto_decompress=False, headers={"User-Agent": "jobtrail"}
    )


def file_name(url: str, index: int) -> str:
    """The result's file name: the URL's last path segment, sanitized, after its index
    (`1-x.mp4`), except the first result's, which keeps its plain name unless that would
    look like an index (`1-x.mp4` there becomes `0-1-x.mp4`). So each result of a job has
    a name of its own, and a URL refreshed for the same result keeps it (to resume)."""
    name = files.safe_name(unquote(urlsplit(url).path.rsplit("/", 1)[-1]), f"result-{index}")
    if index == 0 and not _INDEXED.match(name):
        return name
    return files.safe_name(f"{index}-{name}")


class Downloader:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        data_dir: Path,
        allow_hosts: Collection[str],
        *,
        max_bytes: int,
        timeout: float,
        read_timeout: float = 60.0,
    ) -> None:
        self.session, self.data_dir = session, data_dir
        self.allow_hosts = frozenset(h.lower() for h in allow_hosts)
        self.max_bytes = max_bytes
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=15, sock_read=read_timeout)

    def path_for(self, entry: OutboxEntry) -> Path:
        payload = entry.item.payload
        name = file_name(str(payload.get("url", "")), int(payload.get("index", 0)))
        return files.download_path(self.data_dir, entry.item.provider, entry.item.job_id, name)

    async def fetch(self, entry: OutboxEntry) -> Outcome:
        url = str(entry.item.payload.get("url") or "")
        try:
            check_url(url, self.allow_hosts)  # before the name is taken from it
            dest = self.path_for(entry)
        except (Refused, ValueError) as exc:
            return Outcome(False, error=f"refused: {exc}", permanent=True)
        try:
            return await self._fetch(entry, url, dest)
        except (Refused, aiohttp.InvalidURL, ValueError) as exc:  # a redirect's too
            return Outcome(False, error=f"refused: {exc}", permanent=True)
        except files.SizeError as exc:
            return Outcome(False, error=str(exc), permanent="limit" in str(exc))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                return Outcome(False, error=f"cannot write {dest.parent}: {exc.strerror}")
            return Outcome(False, error=f"{type(exc).__name__}: {exc}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, Refused):
                return Outcome(False, error=f"refused: {cause}", permanent=True)
            return Outcome(False, error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    async def _fetch(self, entry: OutboxEntry, url: str, dest: Path) -> Outcome:
        resume = await files.part_size(dest)
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, self.allow_hosts)
            headers = {"Range": f"bytes={resume}-"} if resume else {}
            async with self.session.get(
                url, headers=headers, allow_redirects=False, timeout=self.timeout
            ) as r:
                if r.status in (301, 302, 303, 307, 308) and "Location" in r.headers:
                    url = urljoin(url, r.headers["Location"])
                    continue
                if r.status == 416 and resume:
                    await files.drop_part(dest)
                    resume = 0
                    continue
                if r.status not in (200, 206):
                    return self._refusal(r)
                start, total = self._extent(r, resume)
                if total is not None and total > self.max_bytes:
                    raise files.SizeError(
                        f"the result ({total} bytes) is larger than the {self.max_bytes}-byte limit"
                    )
                saved = await files.save_stream(
                    r.content.iter_any(),
                    dest,
                    expected_bytes=total,
                    max_bytes=self.max_bytes,
                    resume_from=start,
                    keep_part=True,
                )
            payload = {**entry.item.payload, **saved.to_json(), "finished_at": utcnow().isoformat()}
            details = {
                "path": str(saved.path),
                "bytes": saved.bytes,
                "sha256": saved.sha256,
                "resumed_from": start,
            }
            return Outcome(True, http_status=r.status, payload=payload, details=details)
        return Outcome(False, error=f"more than {MAX_REDIRECTS} redirects", permanent=True)

    @staticmethod
    def _extent(r: aiohttp.ClientResponse, resume: int) -> tuple[int, int | None]:
        """(offset the body starts at, whole file length if known)."""
        if r.status == 206:
            match = _RANGE.fullmatch(r.headers.get("Content-Range", "").strip())
            if match and int(match.group(1)) == resume:
                return resume, None if match.group(3) == "*" else int(match.group(3))
            raise aiohttp.ClientPayloadError("the server sent a range we did not ask for")
        return 0, r.content_length

    @staticmethod
    def _refusal(r: aiohttp.ClientResponse) -> Outcome:
        retry_after = retry_after_seconds(r.headers.get("Retry-After"), utcnow())
        error = f"HTTP {r.status}"
        if r.status in EXPIRED:
            return Outcome(
                False, http_status=r.status, error=f"{error}: the URL has expired", details={"expired": True}
            )
        permanent = 400 <= r.status < 500 and r.status not in (408, 425, 429)
        return Outcome(False, http_status=r.status, error=error, retry_after=retry_after, permanent=permanent)
