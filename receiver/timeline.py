"""Plain-text views of jobs for the terminal."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from jobtrail.core.audit import Effect
from jobtrail.core.model import Event, Job, OutboxEntry
from jobtrail.store.base import StoredDelivery


def job_table(jobs: Sequence[Job]) -> str:
    if not jobs:
        return "no jobs tracked yet"
    rows = [("PROVIDER", "JOB", "STATUS", "PROGRESS", "UPDATED")]
    for job in jobs:
        progress = "" if job.progress is None else f"{job.progress}%"
        status = job.status.value + (" (conflict)" if job.conflict else "")
        rows.append((job.provider, job.id, status, progress, _when(job.updated_at)))
    return _columns(rows)


def show(job: Job, events: Sequence[tuple[Event, Effect | None]], outbox: Sequence[OutboxEntry]) -> str:
    """A job, its downloads and notifications, and its events, each with its effect."""
    lines = [
        f"{job.provider} {job.id}",
        f"  status    {job.status.value}"
        + (f" ({job.provider_status})" if job.provider_status else "")
        + (f"  progress {job.progress}%" if job.progress is not None else ""),
        f"  created   {_when(job.created_at)}",
        f"  updated   {_when(job.updated_at)}",
    ]
    if job.conflict:
        lines.append(f"  CONFLICT  sources disagree: {', '.join(s.value for s in job.terminals)}")
    lines += [f"  result    {url}" for url in job.result_urls]
    if job.error:
        lines.append(f"  error     {job.error}")
    for entry in outbox:
        where = f" -> {entry.item.payload['path']}" if entry.item.payload.get("path") else ""
        error = f"  last error: {entry.last_error}" if entry.last_error and entry.status != "done" else ""
        state = f"{entry.status} ({entry.attempts} attempts)"
        lines.append(f"  {entry.item.kind:<9} {entry.item.sink}: {state}{where}{error}")
    lines.append("")
    rows = [("SEQ", "AT", "SOURCE", "EVENT", "EFFECT", "DETAILS")]
    for event, effect in events:
        said = f"{effect.kind}: {effect.note}" if effect else ""
        rows.append((str(event.seq), _when(event.at), event.source, event.type, said, _details(event.data)))
    lines.append(_columns(rows))
    return "\n".join(lines)


def outbox_table(entries: Sequence[OutboxEntry]) -> str:
    if not entries:
        return "no outbox items"
    rows = [("ID", "KIND", "SINK", "JOB", "STATUS", "ATTEMPTS", "NEXT", "LAST ERROR")]
    for e in entries:
        due = _when(e.next_attempt_at) if e.next_attempt_at and e.status == "pending" else ""
        rows.append(
            (
                str(e.id),
                e.item.kind,
                e.item.sink,
                f"{e.item.provider}/{e.item.job_id}",
                e.status,
                str(e.attempts),
                due,
                (e.last_error or "")[:80],
            )
        )
    return _columns(rows)


def delivery_table(found: Sequence[StoredDelivery]) -> str:
    if not found:
        return "no deliveries match"
    rows = [("ID", "RECEIVED", "SOURCE", "PROVIDER", "JOB", "VERDICT", "REASON")]
    for d in found:
        rows.append(
            (
                str(d.id),
                _when(d.delivery.received_at),
                d.delivery.source,
                d.delivery.provider,
                d.delivery.job_id or "-",
                d.verdict.value,
                (d.reason or "")[:80],
            )
        )
    return _columns(rows)


def _details(data: Mapping[str, Any]) -> str:
    """`key=value` for what is set; strings as they are, anything else as JSON."""
    return " ".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}"
        for key, value in data.items()
        if value is not None
    )


def _when(at: datetime) -> str:
    """`2026-12-02 21:23:33.962Z`: in UTC, to the millisecond, the zone shown."""
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d}Z"


def _columns(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    )
