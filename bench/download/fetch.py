"""One download through jobtrail's Downloader, in a process of its own so its peak
memory is its own. Prints JSON: seconds, bytes, sha256, peak RSS.

    python -m bench.download.fetch URL DATA_DIR
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path

from jobtrail.core.model import OutboxEntry, OutboxItem, utcnow
from jobtrail.dispatch.download import Downloader, new_session


async def main(url: str, data_dir: Path) -> dict[str, object]:
    now = utcnow()
    entry = OutboxEntry(
        1,
        OutboxItem("bench", "download", "bench", "job", "download", {"url": url, "index": 0}),
        "pending",
        0,
        None,
        now,
        now,
    )
    async with new_session(["127.0.0.1"], 4) as session:
        downloader = Downloader(session, data_dir, ["127.0.0.1"], max_bytes=1 << 40, timeout=3600)
        started = time.perf_counter()
        outcome = await downloader.fetch(entry)
        elapsed = time.perf_counter() - started
    if not outcome.ok or outcome.payload is None:
        raise SystemExit(f"download failed: {outcome.error}")
    return {
        "seconds": elapsed,
        "bytes": outcome.payload["bytes"],
        "sha256": outcome.payload["sha256"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], Path(sys.argv[2])))))
