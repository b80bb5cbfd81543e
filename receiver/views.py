"""The JSON shapes of the API (PRODUCT.md): a job with its downloads and notifications
(and, on its own, its polls)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobtrail.core.model import Job, OutboxEntry, isoformat
from jobtrail.store.base import JobDetail, ListedItem, Polls, Store, StoredDelivery


def job_view(job: Job, outbox: Sequence[ListedItem] = ()) -> dict[str, Any]:
    return {
        "provider": job.provider,
        "id": job.id,
        "status": job.status._value_,
        "progress": job.progress,
        "result_urls": list(job.result_urls),
        "error": job.error,
        "provider_status": job.provider_status,
        "conflict": [s.value for s in job.terminals] if job.conflict else None,
        "params": dict(job.params),
        "created_at": isoformat(job.created_at),
        "updated_at": isoformat(job.updated_at),
        "downloads": [_download(i) for i in outbox if i.kind == "download"],
        "notifications": [_notification(i) for i in outbox if i.kind == "notify"],
    }


def detail_view(detail: JobDetail) -> dict[str, Any]:
    """One job on its own (`GET /api/jobs/{p}/{id}`, tracking or submitting one, `jobtrail
    export`): the job view and its polls (null until it is first polled)."""
    listed = [ListedItem.of(e) for e in detail.outbox]
    return {**job_view(detail.job, listed), "polls": polls_view(detail.polls)}


async def one_job(store: Store, job: Job) -> dict[str, Any]:
    """`detail_view` of a job in hand (just written)."""
    return detail_view(await store.detail_of(job))


def polls_view(polls: Polls | None) -> dict[str, Any] | None:
    if polls is None:
        return None
    return {"count": polls.answers, "last_at": isoformat(polls.last_at), "last_digest": polls.last_digest}


def _download(item: ListedItem) -> dict[str, Any]:
    payload = item.payload or {}
    return {
        "url": payload.get("url"),
        "status": item.status,
        "path": payload.get("path"),
        "bytes": payload.get("bytes"),
        "sha256": payload.get("sha256"),
        "error": item.last_error,
    }


def _notification(item: ListedItem) -> dict[str, Any]:
    return {
        "sink": item.sink,
        "status": item.status,
        "attempts": item.attempts,
        "last_error": item.last_error,
    }


_SHOWN = frozenset(("url", "index", "path", "bytes", "sha256", "status"))  # of an item's payload


def outbox_view(entry: OutboxEntry) -> dict[str, Any]:
    item = entry.item
    next_at = entry.next_attempt_at
    return {
        "id": entry.id,
        "key": item.key,
        "kind": item.kind,
        "sink": item.sink,
        "provider": item.provider,
        "job_id": item.job_id,
        "status": entry.status,
        "attempts": entry.attempts,
        "last_error": entry.last_error,
        "next_attempt_at": isoformat(next_at) if next_at else None,
        "created_at": isoformat(entry.created_at),
        "updated_at": isoformat(entry.updated_at),
        "payload": {k: v for k, v in item.payload.items() if k in _SHOWN},
    }


def delivery_view(stored: StoredDelivery, *, whole: bool = False) -> dict[str, Any]:
    """A kept delivery; `whole` adds its headers and body (as text: a byte that is not
    UTF-8 shows as U+FFFD; `body_size` is what was sent, the body as kept may be cut)."""
    d = stored.delivery
    view: dict[str, Any] = {
        "id": stored.id,
        "source": d.source,
        "provider": d.provider,
        "job_id": d.job_id,
        "received_at": isoformat(d.received_at),
        "verdict": stored.verdict.value,
        "reason": stored.reason,
        "body_size": stored.body_size,
    }
    if whole:
        view["headers"] = dict(d.headers)
        view["body"] = bytes(d.body).decode("utf-8", "replace")
        view["body_kept"] = len(d.body)
    return view
