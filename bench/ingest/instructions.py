"""bench/ingest, counted instead of timed: the event loop's instructions per request.

    python -m bench.ingest.instructions [--seconds 20] [--keep DIR]

Runs the bare handler and `jobtrail serve` (SQLite, synchronous=FULL) each under
valgrind's callgrind, drives each with the same wrk load as bench/ingest (unique
deliveries, 64 connections, one wrk thread), and prints the instructions the main
thread (the event loop: the bottleneck) executed per answered request, and their ratio.
Instruction counts do not depend on what else the machine is doing, so this ratio is
steady where bench/ingest's rates move by 20% between runs; it is not the same ratio
(time per instruction differs between code paths), but a change that lowers it lowers
the loop's CPU per request. jobtrail's SQLite writer process is not counted (it runs
beside the loop, see store/sqlite/writer.py). `--store URL` runs the server on another
store, say an empty PostgreSQL database (whose own work is then not counted either:
`bench/replicas` measures it from /proc).

Requests are counted from wrk's report; the up to 64 requests in flight when counting
starts or stops put the figures within about 2% (more requests, smaller error: raise
--seconds). Needs valgrind (callgrind_control) and wrk. `--keep DIR` leaves the
callgrind dumps there, to see where the instructions go:
`callgrind_annotate --inclusive=yes DIR/jobtrail.callgrind.<n>-01`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.ingest.run import HERE, TOKEN, free_port, wait_up


def callgrind(command: list[str], out: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            "--dump-instr=no",
            f"--callgrind-out-file={out}",
            *command,
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def main_thread_instructions(out: Path) -> int:
    """The instructions of thread 1 in the last dump (`<out>.<dump>-01`)."""
    dumps = sorted(
        out.parent.glob(f"{out.name}.*-01"), key=lambda p: int(p.name.split(".")[-1].split("-")[0])
    )
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump next to {out}")
    text = dumps[-1].read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if found is None:
        raise RuntimeError(f"no totals in {dumps[-1]}")
    return int(found.group(1))


def measure(name: str, command: list[str], port: int, env: dict[str, str], work: Path, seconds: int) -> float:
    out = work / f"{name}.callgrind"
    server = callgrind(command, out, env, work / f"{name}.log")
    try:
        wait_up(port, timeout=300)  # any HTTP answer, 404 included, means it is up
        time.sleep(2)  # start-up work done
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True, capture_output=True)
        report = subprocess.run(
            [
                "wrk",
                "-t1",
                "-c64",
                f"-d{seconds}s",
                "-s",
                str(HERE / "unique.lua"),
                f"http://127.0.0.1:{port}/webhooks/pixazo/{TOKEN}",
                "--",
                "1",
                f"ir-{name}-{os.getpid()}",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        time.sleep(3)  # let the requests in flight finish
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, capture_output=True)
        time.sleep(2)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    requests = int(re.search(r"(\d+) requests in", report).group(1))  # type: ignore[union-attr]
    if requests < 500:
        raise RuntimeError(f"{name}: only {requests} requests answered; raise --seconds")
    per_request = main_thread_instructions(out) / requests
    print(f"  {name:<10} {per_request:>10,.0f} instructions per request   ({requests} requests)")
    return per_request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the callgrind dumps in DIR")
    parser.add_argument(
        "--store",
        metavar="URL",
        help="the server's store (default: a new SQLite file); say an empty PostgreSQL database",
    )
    args = parser.parse_args()
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")
    if args.store is not None and not args.store.startswith(("sqlite:///", "postgresql://")):
        parser.error("--store takes a sqlite:/// or postgresql:// URL")
    missing = [tool for tool in ("valgrind", "callgrind_control", "wrk") if shutil.which(tool) is None]
    if missing:
        print(
            f"bench/ingest/instructions needs {', '.join(missing)} (apt-get install valgrind wrk)",
            file=sys.stderr,
        )
        return 2
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="jobtrail-instructions-"))
    try:
        print(
            f"bench/ingest/instructions: callgrind, wrk -t1 -c64 -d{args.seconds}s, unique Pixazo callbacks"
        )
        bare_port, jt_port = free_port(), free_port()
        bare = measure(
            "bare",
            [sys.executable, str(HERE / "bare.py"), str(bare_port)],
            bare_port,
            dict(os.environ),
            work,
            args.seconds,
        )
        env = {
            **os.environ,
            "JOBTRAIL_PORT": str(jt_port),
            "JOBTRAIL_DATA_DIR": str(work),
            "JOBTRAIL_STORE_URL": args.store or f"sqlite:///{work / 'bench.db'}",
            "JOBTRAIL_WEBHOOK_TOKEN": TOKEN,
            "JOBTRAIL_LOG_LEVEL": "info",
        }
        durable = measure(
            "jobtrail",
            [sys.executable, "-m", "jobtrail.receiver.cli", "serve"],
            jt_port,
            env,
            work,
            args.seconds,
        )
        print(f"  instruction ratio bare/durable: {bare / durable:.2f}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.keep is not None:
        print(f"  callgrind dumps kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
