"""The `jobtrail` command: serve, and look at jobs from the terminal."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from core import logs
from core.model import PROVIDERS, Status
from core.settings import ConfigError, Settings, load
from receiver import timeline
from store.base import StoreError


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load(args.config, os.environ)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except ConfigError as exc:
        print(f"jobtrail: configuration error: {exc.setting}: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"jobtrail: configuration error: JOBTRAIL_DATA_DIR: {exc}", file=sys.stderr)
        return 2
    logs.configure(level=settings.log_level, fmt=settings.log_format, secrets=settings.secrets())
    try:
        code: int = asyncio.run(args.run(settings, args))
    except StoreError as exc:
        print(f"jobtrail: store error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"jobtrail: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from receiver.serve import serve

    await serve(settings)
    return 0


async def _jobs_list(settings: Settings, args: argparse.Namespace) -> int:
    from receiver.serve import store_for

    store = store_for(settings)
    await store.open()
    try:
        page = await store.list_jobs(provider=args.provider, status=args.status, limit=args.limit)
    finally:
        await store.close()
    print(timeline.job_table(page.jobs))
    return 0


async def _jobs_show(settings: Settings, args: argparse.Namespace) -> int:
    from receiver.serve import store_for

    store = store_for(settings)
    await store.open()
    try:
        job = await store.get_job(args.provider, args.job_id)
        if job is None:
            print(f"jobtrail: no {args.provider} job {args.job_id!r} is tracked", file=sys.stderr)
            return 1
        events = await store.job_events(args.provider, args.job_id, limit=100_000)
        outbox = await store.outbox_for_job(args.provider, args.job_id)
    finally:
        await store.close()
    print(timeline.show(job, events, outbox))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobtrail", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML configuration file (or JOBTRAIL_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", parents=[common], help="run receiver, listeners, dispatcher")
    serve.set_defaults(run=_serve)

    jobs = commands.add_parser("jobs", help="look at tracked jobs").add_subparsers(
        dest="jobs_command", required=True
    )
    listing = jobs.add_parser("list", parents=[common], help="tracked jobs, newest first")
    listing.add_argument("--provider", choices=PROVIDERS)
    listing.add_argument("--status", choices=[s.value for s in Status])
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=_jobs_list)
    show = jobs.add_parser("show", parents=[common], help="one job and its timeline")
    show.add_argument("provider", choices=PROVIDERS)
    show.add_argument("job_id")
    show.set_defaults(run=_jobs_show)
    return parser


if __name__ == "__main__":
    sys.exit(main())
