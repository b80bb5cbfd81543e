"""The `jobtrail` command: serve, and look at jobs from the terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobtrail.core import logs
from jobtrail.core.model import PROVIDERS, Status, Verdict
from jobtrail.core.settings import ConfigError, Settings, default_store_url, load
from jobtrail.receiver import history, remote, timeline
from jobtrail.receiver.views import delivery_view, job_view, outbox_view
from jobtrail.store import sqlite_path
from jobtrail.store.base import BadCursor, Store, StoreError, StoreLocked


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load(args.config, os.environ)
        if args.data == "create":
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        elif args.data == "existing":
            existing_database(settings)
    except ConfigError as exc:
        print(f"jobtrail: configuration error: {exc.setting}: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"jobtrail: configuration error: JOBTRAIL_DATA_DIR: {exc}", file=sys.stderr)
        return 2
    logs.configure(level=settings.log_level, fmt=settings.log_format, secrets=settings.secrets())
    try:
        code: int = asyncio.run(args.run(settings, args))
    except ConfigError as exc:  # found only when used: the host, the port
        print(f"jobtrail: configuration error: {exc.setting}: {exc.message}", file=sys.stderr)
        return 2
    except StoreLocked as exc:
        print(f"jobtrail: JOBTRAIL_DATA_DIR {settings.data_dir}: {exc}", file=sys.stderr)
        return 2
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
    from jobtrail.receiver.serve import serve

    await serve(settings)
    return 0


@contextlib.asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[Store]:
    """The store the settings name, open for one command, closed after it."""
    from jobtrail.receiver.serve import store_for

    store = store_for(settings)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _json_lines(views: Iterable[dict[str, Any]]) -> int:
    for view in views:
        print(json.dumps(view))
    return 0


async def _jobs_list(settings: Settings, args: argparse.Namespace) -> int:
    try:
        async with _opened(settings) as store:
            page = await store.list_jobs(
                provider=args.provider, status=args.status, limit=args.limit, cursor=args.cursor
            )
    except BadCursor as exc:
        print(f"jobtrail: --cursor: {exc}", file=sys.stderr)
        return 2
    if args.json:
        return _json_lines(job_view(job) for job in page.jobs)
    print(timeline.job_table(page.jobs))
    if page.next_cursor:
        print(f"more: jobtrail jobs list --cursor {page.next_cursor}")
    return 0


async def _jobs_show(settings: Settings, args: argparse.Namespace) -> int:
    async with _opened(settings) as store:
        job = await store.get_job(args.provider, args.job_id)
        if job is None:
            print(f"jobtrail: no {args.provider} job {args.job_id!r} is tracked", file=sys.stderr)
            return 1
        events = await history.annotated(store, args.provider, args.job_id, limit=100_000)
        outbox = await store.outbox_for_job(args.provider, args.job_id)
    print(timeline.show(job, events, outbox))
    return 0


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    from jobtrail.receiver.export import export

    out: Path | None = args.out
    if out is not None and (problem := _not_a_new_file(out)):
        print(f"jobtrail: --out: {problem}", file=sys.stderr)
        return 2
    until = args.until or datetime.now(UTC)
    async with _opened(settings) as store:
        count = await export(
            store, until, args.provider, out, lambda n: print(f"exported {n} jobs...", file=sys.stderr)
        )
    where = f" to {out}" if out else ""
    print(f"exported {count} finished jobs last changed before {until.isoformat()}{where}", file=sys.stderr)
    return 0


def _not_a_new_file(out: Path) -> str | None:
    if out.exists():
        return f"{out} exists; name a new file (nothing was written)"
    if not out.parent.is_dir():
        return f"{out.parent} is not a directory"
    return None


async def _outbox_list(settings: Settings, args: argparse.Namespace) -> int:
    async with _opened(settings) as store:
        entries = await store.outbox(
            status=args.status, sink=args.sink, since=args.since, until=args.until, limit=args.limit
        )
        disabled = await store.disabled_sinks()
    if args.json:
        return _json_lines(outbox_view(entry) for entry in entries)
    print(timeline.outbox_table(entries))
    for sink, reason in sorted(disabled.items()):
        print(f"sink {sink} is disabled: {reason}")
    return 0


async def _deliveries_list(settings: Settings, args: argparse.Namespace) -> int:
    from jobtrail.store.base import DeliveryFilter

    filters = DeliveryFilter(args.verdict, args.provider, args.since, args.until, args.before)
    async with _opened(settings) as store:
        found = await store.delivery_page(filters, args.limit + 1)
    page = found[: args.limit]
    if args.json:
        return _json_lines(delivery_view(stored) for stored in page)
    print(timeline.delivery_table(page))
    if len(found) > args.limit and page:
        print(f"more: add --before {page[-1].id}")
    return 0


async def _outbox_retry(settings: Settings, args: argparse.Namespace) -> int:
    from jobtrail.dispatch import replay

    try:
        async with _opened(settings) as store:
            await replay.retry_now(store, args.id)
    except replay.NotReplayable as exc:
        print(f"jobtrail: {exc}", file=sys.stderr)
        return 1
    print(f"outbox item {args.id} is due now; a running jobtrail picks it up")
    return 0


async def _outbox_replay(settings: Settings, args: argparse.Namespace) -> int:
    from jobtrail.dispatch import replay

    if args.id is None and args.sink is None and args.since is None and args.until is None:
        print("jobtrail: name an item id, or --sink / --since / --until for dead items", file=sys.stderr)
        return 2
    try:
        async with _opened(settings) as store:
            if args.id is not None:
                await replay.replay_one(store, args.id)
                count = 1
            else:
                replayed = await replay.replay_dead(store, sink=args.sink, since=args.since, until=args.until)
                count = replayed.queued
    except replay.NotReplayable as exc:
        print(f"jobtrail: {exc}", file=sys.stderr)
        return 1
    print(f"replayed {count} item{'s' if count != 1 else ''}; a running jobtrail picks them up now")
    return 0


async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from jobtrail.store import migrations

    async with _opened(settings) as store:  # migrations run at open, under a lock
        pass
    print(f"the {store.kind} store is at schema version {migrations.latest(store.kind)}")
    return 0


async def _store_copy(settings: Settings, args: argparse.Namespace) -> int:
    from jobtrail.core import values
    from jobtrail.receiver.serve import planner_for
    from jobtrail.store import copy as copying
    from jobtrail.store import open_store

    try:
        urls = [values.store_url(args.source, "--from"), values.store_url(args.target, "--to")]
    except ConfigError as exc:
        print(f"jobtrail: {exc.setting}: {exc.message}", file=sys.stderr)
        return 2
    source, target = (open_store(str(url), planner_for(settings)) for url in urls)

    def progress(table: str, done: int, total: int) -> None:
        print(f"  {table}: {done}/{total}", file=sys.stderr)

    await source.open(exclusive=True)  # SQLite: no server writes it meanwhile
    try:
        await target.open(exclusive=True)
        try:
            copied = await copying.copy(source, target, progress, batch=args.batch)
        except copying.TargetNotEmpty as exc:
            print(f"jobtrail: --to: {exc}", file=sys.stderr)
            return 2
        finally:
            await target.close()
    finally:
        await source.close()
    for done in copied:
        print(f"{done.table:<11} {done.rows:>9} rows  sha256 {done.sha256}")
    print(f"copied and checked: the target holds the same {sum(d.rows for d in copied)} rows")
    return 0


async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from jobtrail.simulators.demo import run_demo

    logs.configure(level=os.environ.get("JOBTRAIL_LOG_LEVEL", "warning"), fmt=settings.log_format)
    return await run_demo(keep=Path(args.keep) if args.keep else None)


async def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from jobtrail.simulators.standalone import simulate

    return await simulate(args.first_port)


def existing_database(settings: Settings) -> None:
    """A command that reads the store refuses a SQLite file that is not there, instead of
    creating an empty one and answering "no jobs" (a mistyped JOBTRAIL_DATA_DIR)."""
    path = sqlite_path(settings.store_url)
    if path is None or Path(path).is_file():
        return
    named_by_dir = settings.store_url == default_store_url(settings.data_dir)
    setting = "JOBTRAIL_DATA_DIR" if named_by_dir else "JOBTRAIL_STORE_URL"
    where = settings.data_dir if named_by_dir else path
    raise ConfigError(
        setting,
        f"{where} holds no jobtrail database; is it the one `jobtrail serve` uses? (nothing was created)",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jobtrail")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def _when(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobtrail", description=__doc__)
    parser.set_defaults(data=None)  # the data directory: "create" it, or an "existing" database
    parser.add_argument("--version", action="version", version=f"jobtrail {_version()}")
    parser.add_argument("--config", help="TOML configuration file (or JOBTRAIL_CONFIG)")
    # Accepted after the subcommand too; there, absent, it leaves the one before in place.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=argparse.SUPPRESS, help="TOML configuration file (or JOBTRAIL_CONFIG)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", parents=[common], help="run receiver, listeners, dispatcher")
    serve.set_defaults(run=_serve, data="create")

    jobs = commands.add_parser("jobs", help="look at tracked jobs").add_subparsers(
        dest="jobs_command", required=True
    )
    listing = jobs.add_parser("list", parents=[common], help="tracked jobs, newest first")
    listing.add_argument("--provider", choices=PROVIDERS)
    listing.add_argument("--status", choices=[s.value for s in Status])
    listing.add_argument("--limit", type=int, default=50, choices=range(1, 501), metavar="1-500")
    listing.add_argument("--cursor", help="next_cursor printed under the previous page")
    listing.add_argument("--json", action="store_true", help="JSON lines, one job each (the API's shape)")
    listing.set_defaults(run=_jobs_list, data="existing")
    show = jobs.add_parser("show", parents=[common], help="one job and its timeline")
    show.add_argument("provider", choices=PROVIDERS)
    show.add_argument("job_id")
    show.set_defaults(run=_jobs_show, data="existing")

    export = commands.add_parser(
        "export", parents=[common], help="finished jobs with their timelines, as JSON lines"
    )
    export.add_argument("--until", type=_when, help="last changed before this ISO 8601 time (default: now)")
    export.add_argument("--provider", choices=PROVIDERS)
    export.add_argument("--out", type=Path, help="write to this new file (default: standard output)")
    export.set_defaults(run=_export, data="existing")

    migrate = commands.add_parser("migrate", parents=[common], help="bring the store's schema up to date")
    migrate.set_defaults(run=_migrate, data="create")

    store = commands.add_parser("store", help="the store as a whole").add_subparsers(
        dest="store_command", required=True
    )
    copy = store.add_parser(
        "copy", parents=[common], help="copy a whole log into an empty store (SQLite <-> PostgreSQL)"
    )
    copy.add_argument(
        "--from", dest="source", required=True, help="the store to read: sqlite:/// or postgresql://"
    )
    copy.add_argument("--to", dest="target", required=True, help="an empty store to write")
    copy.add_argument("--batch", type=int, default=2000, choices=range(1, 100_001), metavar="ROWS")
    copy.set_defaults(run=_store_copy)

    demo = commands.add_parser("demo", parents=[common], help="the whole flow against built-in simulators")
    demo.add_argument("--keep", help="the data directory to use (default: a fresh temporary one)")
    demo.set_defaults(run=_demo)

    submit = commands.add_parser(
        "submit", parents=[common], help="start a job at a provider, push channel wired"
    )
    submit.add_argument("provider", choices=PROVIDERS)
    submit.add_argument("--video", required=True, help="the input video URL")
    submit.add_argument("--upscale-factor", type=int, help="pixazo: 2 or 4; venice: 1, 2 or 4")
    submit.add_argument("--resolution", help="apiframe: 720p, 1080p, 4k; oxen: 1080p, 2k, 4k")
    submit.add_argument("--fps", type=int, help="apiframe: 24, 30, 60; oxen: 1-60")
    submit.add_argument("--webhook-mode", choices=["terminal", "sync"], help="pixazo callbacks")
    submit.add_argument("--model", help="venice model (default topaz-video-upscale)")
    submit.add_argument("--api", help="jobtrail's URL (default http://JOBTRAIL_HOST:JOBTRAIL_PORT)")
    submit.set_defaults(run=remote.submit)

    track = commands.add_parser(
        "track", parents=[common], help="track a job submitted elsewhere (asks the running server)"
    )
    track.add_argument("provider", choices=PROVIDERS)
    track.add_argument("job_id", help="the provider's id of the job")
    track.add_argument("--model", help="venice: the model it was submitted to (default topaz-video-upscale)")
    track.add_argument("--download-url", help="where to fetch the result, if the provider does not say")
    track.add_argument(
        "--wait-for-key", action="store_true", help="track it even though the server has no key for it yet"
    )
    track.add_argument("--api", help="jobtrail's URL (default http://JOBTRAIL_HOST:JOBTRAIL_PORT)")
    track.set_defaults(run=remote.track)

    simulate = commands.add_parser(
        "simulate", parents=[common], help="run the four provider simulators until Ctrl-C (keys printed)"
    )
    simulate.add_argument(
        "--first-port", type=int, choices=range(1024, 65533), metavar="PORT", help="ports PORT..PORT+3"
    )
    simulate.set_defaults(run=_simulate)

    outbox = commands.add_parser("outbox", help="downloads and notifications").add_subparsers(
        dest="outbox_command", required=True
    )
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--sink", help="download, slack, webhook or email")
    filters.add_argument("--since", type=_when, help="created at or after (ISO 8601)")
    filters.add_argument("--until", type=_when, help="created before (ISO 8601)")
    deliveries = commands.add_parser("deliveries", help="every inbound delivery (the audit trail)")
    dlist = deliveries.add_subparsers(dest="deliveries_command", required=True).add_parser(
        "list", parents=[common], help="deliveries, newest first, rejected ones with their reason"
    )
    dlist.add_argument("--verdict", choices=[v.value for v in Verdict])
    dlist.add_argument("--provider", choices=PROVIDERS)
    dlist.add_argument("--since", type=_when, help="received at or after (ISO 8601)")
    dlist.add_argument("--until", type=_when, help="received before (ISO 8601)")
    dlist.add_argument("--before", type=int, help="ids below this one (the `more:` line's)")
    dlist.add_argument("--limit", type=int, default=50, choices=range(1, 501), metavar="1-500")
    dlist.add_argument("--json", action="store_true", help="JSON lines (the API's shape)")
    dlist.set_defaults(run=_deliveries_list, data="existing")

    olist = outbox.add_parser("list", parents=[common, filters], help="outbox items, oldest first")
    olist.add_argument("--status", choices=["pending", "done", "dead"])
    olist.add_argument("--limit", type=int, default=100, choices=range(1, 501), metavar="1-500")
    olist.add_argument("--json", action="store_true", help="JSON lines, one item each (the API's shape)")
    olist.set_defaults(run=_outbox_list, data="existing")
    oreplay = outbox.add_parser(
        "replay", parents=[common, filters], help="run one item again, or every dead item matching"
    )
    oreplay.add_argument("id", nargs="?", type=int, help="an outbox item id (from `jobtrail outbox list`)")
    oreplay.set_defaults(run=_outbox_replay, data="existing")
    oretry = outbox.add_parser(
        "retry", parents=[common], help="run a pending or dead item now (pending: not waiting out its retry)"
    )
    oretry.add_argument("id", type=int, help="an outbox item id (from `jobtrail outbox list`)")
    oretry.set_defaults(run=_outbox_retry, data="existing")
    return parser


if __name__ == "__main__":
    sys.exit(main())
