"""The console's actions (POST, each behind `guard.action`): retry or replay one outbox
item, and replay the dead items of a sink and a time range after a confirmation that
says how many there are. Each goes back to the page it came from with a notice."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import NamedTuple

from aiohttp import web
from multidict import MultiDictProxy

from jobtrail.console.guard import Session, done, refused
from jobtrail.console.render import html
from jobtrail.core.model import Event
from jobtrail.dispatch import replay
from jobtrail.receiver import api, params
from jobtrail.receiver.keys import STORE
from jobtrail.store.base import Store

_ID = re.compile(r"[0-9]{1,18}")


async def retry(request: web.Request, session: Session, form: MultiDictProxy[str]) -> web.StreamResponse:
    return await _one(request, form, replay.retry_now, "will run now")


async def replay_one(request: web.Request, session: Session, form: MultiDictProxy[str]) -> web.StreamResponse:
    return await _one(request, form, replay.replay_one, "is queued again")


Runner = Callable[[Store, int], Awaitable[Event | None]]


async def _one(request: web.Request, form: MultiDictProxy[str], run: Runner, said: str) -> web.StreamResponse:
    raw = request.match_info["entry_id"]
    if not _ID.fullmatch(raw):
        return refused("No such outbox item.", 404)
    try:
        await run(request.app[STORE], int(raw))
    except replay.NotReplayable as exc:
        return refused(str(exc), 404 if exc.unknown else 409)
    raise done(form.get("next", "/ui/outbox"), f"Outbox item {raw} {said}.")


class Bulk(NamedTuple):
    """The sink and time range of a bulk replay (an empty field: any)."""

    sink: str | None
    since: datetime | None
    until: datetime | None

    @classmethod
    def read(cls, form: MultiDictProxy[str]) -> Bulk:
        given = {k: v for k, v in form.items() if k in cls._fields and v}
        return cls(
            params.choice(given.get("sink"), "sink", api.SINKS),
            params.time(given.get("since"), "since"),
            params.time(given.get("until"), "until"),
        )


async def confirm_bulk(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    """How many dead items a bulk replay would queue, and a button to do it."""
    wanted = Bulk.read(form)
    found = await request.app[STORE].outbox(status="dead", limit=api.REPLAY_LIMIT + 1, **wanted._asdict())
    context = {
        "session": session,
        "nav": "outbox",
        "count": min(len(found), api.REPLAY_LIMIT),
        "more": len(found) > api.REPLAY_LIMIT,
        "form": {k: form.get(k, "") for k in ("sink", "since", "until")},
    }
    return html("confirm.html", context)


async def replay_bulk(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    wanted = Bulk.read(form)
    result = await replay.replay_dead(request.app[STORE], limit=api.REPLAY_LIMIT, **wanted._asdict())
    more = " More dead items match: replay again to queue them." if result.more else ""
    raise done("/ui/outbox?status=pending", f"{result.queued} dead items are queued again.{more}")
