"""Webhook routes: `POST /webhooks/pixazo/{token}` and `POST /webhooks/apiframe`.

Each answers 2xx only after the delivery and its events are committed. A duplicate is
answered 200 too (the sender must stop retrying) and kept as a duplicate delivery.
Refusals (401, 400) are kept as rejected deliveries so nothing a provider sent is lost.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from core.model import Observation
from providers import apiframe, pixazo
from providers.fields import PayloadError
from receiver import bodies
from receiver.errors import ApiError
from receiver.keys import METRICS, SCRUB, SETTINGS, STORE

log = structlog.get_logger(__name__)

REJECTED_BODY_KEPT = 4096


def setup(app: web.Application) -> None:
    app.router.add_post("/webhooks/pixazo/{token}", pixazo_webhook)
    app.router.add_post("/webhooks/apiframe", apiframe_webhook)
    app.router.add_route("*", "/webhooks/{provider}", unknown_webhook)


async def pixazo_webhook(request: web.Request) -> web.Response:
    expected = request.app[SETTINGS].webhook_token
    given = request.match_info["token"]
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        await _reject(request, pixazo.NAME, b"", "bad webhook token")
        raise ApiError(401, "unauthorized", "the webhook token is not valid")
    return await _intake(request, pixazo.NAME, None, pixazo.parse_status)


async def apiframe_webhook(request: web.Request) -> web.Response:
    api_key = request.app[SETTINGS].provider(apiframe.NAME).api_key

    def authenticate(body: bytes) -> None:
        if not api_key:
            raise _Unauthorized("APIFRAME_API_KEY is not set, so no signature can be checked")
        header = request.headers.get(apiframe.SIGNATURE_HEADER)
        if not apiframe.verify(apiframe.signing_key(api_key), body, header):
            raise _Unauthorized("the X-Webhook-Signature does not sign this body")

    return await _intake(request, apiframe.NAME, authenticate, apiframe.parse)


async def unknown_webhook(request: web.Request) -> web.Response:
    provider = request.match_info["provider"]
    if provider == pixazo.NAME:
        raise ApiError(401, "unauthorized", "the Pixazo route needs its token: /webhooks/pixazo/{token}")
    raise ApiError(404, "unknown_provider", f"no webhook route for provider {provider[:64]!r}")


class _Unauthorized(Exception):
    pass


async def _intake(
    request: web.Request,
    provider: str,
    authenticate: Callable[[bytes], None] | None,
    parse: Callable[[Any], Observation],
) -> web.Response:
    settings = request.app[SETTINGS]
    try:
        bodies.check_length(request, settings.max_body_bytes)  # a huge body is 413 before 415
        bodies.check_json_type(request)
        body = await bodies.read_body(request, settings.max_body_bytes)
    except ApiError as exc:
        await _reject(request, provider, b"", exc.message)
        raise
    try:
        if authenticate is not None:
            authenticate(body)
        observation = parse(bodies.parse_json(body))
    except _Unauthorized as exc:
        await _reject(request, provider, body, str(exc))
        raise ApiError(401, "unauthorized", str(exc)) from exc
    except ApiError as exc:
        await _reject(request, provider, body, exc.message)
        raise
    except PayloadError as exc:
        await _reject(request, provider, body, str(exc))
        raise ApiError(400, "invalid_payload", str(exc)) from exc
    delivery = request.app[SCRUB].delivery(request, "webhook", provider, body, observation.job_id)
    result = await request.app[STORE].intake(delivery, [observation])
    request.app[METRICS].delivery(provider, "webhook", result.verdict.value, len(result.events))
    log.debug(
        "webhook_received",
        provider=provider,
        job_id=observation.job_id,
        delivery_id=result.delivery_id,
        verdict=result.verdict.value,
    )
    return web.Response(
        body=b'{"delivery_id": %d, "verdict": "%s"}' % (result.delivery_id, result.verdict.value.encode()),
        content_type="application/json",
    )


async def _reject(request: web.Request, provider: str, body: bytes, reason: str) -> None:
    delivery = request.app[SCRUB].delivery(request, "webhook", provider, body[:REJECTED_BODY_KEPT], None)
    await request.app[STORE].reject(delivery, reason)
    request.app[METRICS].delivery(provider, "webhook", "rejected")
    log.info("webhook_rejected", provider=provider, reason=reason, remote=request.remote)
