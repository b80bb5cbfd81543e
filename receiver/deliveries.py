"""`GET /api/deliveries` and `GET /api/deliveries/{id}`: every inbound delivery as it was
kept, accepted, duplicate or rejected with its reason (the audit trail)."""

from __future__ import annotations

import re

from aiohttp import web
from multidict import MultiMapping

from jobtrail.core import turns
from jobtrail.core.model import PROVIDERS, Verdict
from jobtrail.receiver import params
from jobtrail.receiver.answer import json_answer
from jobtrail.receiver.api import guarded
from jobtrail.receiver.errors import ApiError
from jobtrail.receiver.keys import STORE
from jobtrail.receiver.views import delivery_view
from jobtrail.store.base import DeliveryFilter

MAX_PAGE = 500
_ID = re.compile(r"[0-9]{1,18}")


def setup(app: web.Application) -> None:
    app.router.add_get("/api/deliveries", guarded(list_deliveries))
    app.router.add_get("/api/deliveries/{delivery_id}", guarded(show_delivery))


FILTERS = ("verdict", "provider", "since", "until", "before")


def delivery_filter(query: MultiMapping[str]) -> DeliveryFilter:
    return DeliveryFilter(
        verdict=params.choice(query.get("verdict"), "verdict", (v.value for v in Verdict)),
        provider=params.choice(query.get("provider"), "provider", PROVIDERS),
        since=params.time(query.get("since"), "since"),
        until=params.time(query.get("until"), "until"),
        before=params.whole(before, "before", 0, low=1) if (before := query.get("before")) else None,
    )


async def list_deliveries(request: web.Request) -> web.Response:
    """Newest first; `before` (the `next_before` of the page before) pages on."""
    query = request.query
    params.known(query, (*FILTERS, "limit"))
    limit = params.whole(query.get("limit"), "limit", 50, MAX_PAGE, low=1)
    found = await request.app[STORE].delivery_page(delivery_filter(query), limit + 1)
    page = found[:limit]
    more = len(found) > limit
    return json_answer(
        {
            "deliveries": await turns.each(page, delivery_view),
            "next_before": page[-1].id if more and page else None,
        }
    )


async def show_delivery(request: web.Request) -> web.Response:
    """One delivery with its headers (secrets removed when it was kept) and its body."""
    raw = request.match_info["delivery_id"]
    found = await request.app[STORE].delivery(int(raw)) if _ID.fullmatch(raw) else None
    if found is None:
        raise ApiError(404, "delivery_not_found", "no such delivery")
    return json_answer(delivery_view(found, whole=True))
