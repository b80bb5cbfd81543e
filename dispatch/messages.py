"""What a notification says, for each kind of sink. Pure: a job and its outbox in,
a Slack message, an email or a webhook body out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import orjson

from jobtrail.core.model import Job, OutboxEntry

_MARK = {"succeeded": "✅", "failed": "❌", "cancelled": "⚪", "processing": "⏳", "queued": "⏳"}


@dataclass(frozen=True, slots=True)
class File:
    url: str | None
    status: str
    path: str | None
    bytes: int | None
    sha256: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Notice:
    provider: str
    job_id: str
    status: str
    provider_status: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    files: tuple[File, ...]
    result_urls: tuple[str, ...]

    @property
    def duration(self) -> float:
        return max(0.0, (self.updated_at - self.created_at).total_seconds())

    @property
    def title(self) -> str:
        return f"{self.provider} job {self.job_id} {self.status}"


def notice(job: Job, status: str, outbox: Sequence[OutboxEntry]) -> Notice:
    files = tuple(
        File(
            e.item.payload.get("url"),
            e.status,
            e.item.payload.get("path"),
            e.item.payload.get("bytes"),
            e.item.payload.get("sha256"),
            e.last_error,
        )
        for e in outbox
        if e.item.kind == "download"
    )
    return Notice(
        job.provider,
        job.id,
        status,
        job.provider_status,
        job.error,
        job.created_at,
        job.updated_at,
        files,
        job.result_urls,
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _file_lines(n: Notice) -> list[str]:
    lines = []
    for f in n.files:
        if f.status == "done":
            lines.append(f"{f.path} ({f.bytes} bytes, sha256 {f.sha256})")
        else:
            lines.append(f"{f.url}: download {f.status}{f': {f.error}' if f.error else ''}")
    return lines


def slack(n: Notice) -> dict[str, Any]:
    """A Block Kit message: a header, the facts, the file or the error."""
    facts = [
        f"*Provider*\n{n.provider}",
        f"*Job*\n`{n.job_id}`",
        f"*Status*\n{n.status}" + (f" ({n.provider_status})" if n.provider_status else ""),
        f"*Duration*\n{_duration(n.duration)}",
    ]
    heading = f"{_MARK.get(n.status, '•')} {n.title}"[:150]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": heading}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in facts]},
    ]
    detail = "\n".join(_file_lines(n)) if n.status == "succeeded" else (n.error or "")
    if detail:
        label = "Files" if n.status == "succeeded" else "Error"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*{label}*\n{detail}"[:3000]}})
    return {"text": n.title, "blocks": blocks}


def email(n: Notice, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """A plain-text email whose subject says the outcome."""
    message = EmailMessage()
    message["Subject"] = f"[jobtrail] {n.title}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    lines = [
        f"Provider: {n.provider}",
        f"Job:      {n.job_id}",
        f"Status:   {n.status}" + (f" ({n.provider_status})" if n.provider_status else ""),
        f"Duration: {_duration(n.duration)}",
    ]
    if n.error:
        lines.append(f"Error:    {n.error}")
    files = _file_lines(n)
    if files:
        lines += ["", "Files:", *(f"  {line}" for line in files)]
    message.set_content("\n".join(lines) + "\n")
    return message


def webhook(n: Notice, at: datetime) -> bytes:
    """The JSON body of a signed webhook, in the Standard Webhooks shape {type, timestamp, data}."""
    return orjson.dumps(
        {
            "type": f"job.{n.status}",
            "timestamp": at.isoformat(),
            "data": {
                "provider": n.provider,
                "id": n.job_id,
                "status": n.status,
                "provider_status": n.provider_status,
                "error": n.error,
                "created_at": n.created_at.isoformat(),
                "updated_at": n.updated_at.isoformat(),
                "result_urls": list(n.result_urls),
                "downloads": [
                    {"url": f.url, "status": f.status, "path": f.path, "bytes": f.bytes, "sha256": f.sha256}
                    for f in n.files
                ],
            },
        }
    )
