"""bench/download: one large file from a local server through jobtrail's Downloader
(streamed, sha256 computed, fsync'd, renamed into place) against curl fetching the same
file in the same run; peak memory at two sizes.

    python -m bench.download.run [--sizes 100,1000] [--runs 3]

Sizes are in MB. The files are written once to a temp dir and served by an aiohttp
FileResponse (sendfile) in its own process. Each size is fetched `--runs` times by curl
and by jobtrail, alternating; the best of each is compared. Target: jobtrail wall time
<= 1.1x curl, and a peak RSS that does not grow with the file size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.ingest.run import free_port, wait_up

TARGET = 1.1


def make_file(path: Path, megabytes: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with path.open("wb") as out:
        for n in range(megabytes):
            chunk = n.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def curl(url: str, dest: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["curl", "-sS", "-o", str(dest), url], check=True)
    elapsed = time.perf_counter() - started
    dest.unlink()
    return elapsed


def jobtrail(url: str, data_dir: Path) -> dict[str, float | str]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.download.fetch", url, str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float | str] = json.loads(out.stdout)
    shutil.rmtree(data_dir / "downloads", ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        print("bench/download needs curl", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="jobtrail-bench-dl-"))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.download.serve_files", str(port), str(work)])
    ok = True
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        sums = {size: make_file(work / f"f{size}.bin", size) for size in sizes}
        wait_up(port, f"/f{sizes[0]}.bin")
        print(f"bench/download: {os.cpu_count()} cores, files on {work}, best of {args.runs}")
        for size in sizes:
            url = f"http://127.0.0.1:{port}/f{size}.bin"
            curls, ours = [], []
            for _ in range(args.runs):
                curls.append(curl(url, work / "curl.out"))
                ours.append(jobtrail(url, work / "jt"))
            best = min(ours, key=lambda r: float(r["seconds"]))
            ratio = float(best["seconds"]) / min(curls)
            right = best["sha256"] == sums[size]
            ok = ok and right and ratio <= TARGET
            print(
                f"  {size:>5} MB  curl {min(curls):6.2f} s   jobtrail {float(best['seconds']):6.2f} s"
                f"   ratio {ratio:4.2f} (target <= {TARGET})   peak RSS {float(best['peak_rss_mb']):6.1f} MB"
                f"   sha256 {'ok' if right else 'WRONG'}"
            )
    finally:
        server.kill()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
