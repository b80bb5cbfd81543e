"""Bearer tokens: the API's (`JOBTRAIL_API_TOKEN`) and the scraper's (`JOBTRAIL_METRICS_TOKEN`)."""

from __future__ import annotations

import hmac

from aiohttp import web


def bearer_matches(request: web.Request, token: str) -> bool:
    """Whether the request says `Authorization: Bearer <token>` (compared in constant time)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(errors="replace"), token.encode()
    )
