"""Webhook routes: `POST /webhooks/pixazo/{token}` and `POST /webhooks/apiframe`.

Each answers 2xx only after the delivery and its events are committed. A duplicate is
answered 200 too (the sender must stop retrying) and kept as a duplicate delivery.
Refusals (401, 400, 413, 415) are kept as rejected deliveries so nothing a provider sent
is lost: whole once the sender is authenticated, else the first REJECTED_BODY_KEPT bytes,
within the source's budget (receiver/budget.py; over it: 429, not kept, counted).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from jobtrail.core.model import Observation
from jobtrail.providers import apiframe, pixazo
from jobtrail.providers.fields import PayloadError
from jobtrail.receiver import bodies
from jobtrail.receiver.budget import RefusalBudget
from jobtrail.receiver.errors import ApiError
from jobtrail.receiver.keys import METRICS, SCRUB, SETTINGS, STORE

log = structlog.get_logger(__name__)

REJECTED_BODY_KEPT = 4096


def setup(app: web.Application) -> None:
    routes = _Webhooks(app)
    app.router.add_post("/webhooks/pixazo/{token}", routes.pixazo)
    app.router.add_post("/webhooks/apiframe", routes.apiframe)
    app.router.add_route("*", "/webhooks/{provider}", unknown_webhook)


class _Unauthorized(Exception):
    pass


class _Webhooks:
    """The webhook routes over what they need from the app, looked up once (every lookup
    through `request.app` is paid on intake's hot path)."""

    def __init__(self, app: web.Application) -> None:
        self.settings, self.store = app[SETTINGS], app[STORE]
        self.metrics, self.scrub = app[METRICS], app[SCRUB]
        self.budget = RefusalBudget(self.settings.refused_bytes_per_minute)
        # Decided once: a disabled log call still costs its arguments and a proxy lookup.
        self.log_each = log.is_enabled_for(logging.DEBUG)

    async def pixazo(self, request: web.Request) -> web.Response:
        expected = self.settings.webhook_token
        given = request.match_info["token"]
        if not expected or not hmac.compare_digest(given.encode(errors="replace"), expected.encode()):
            await self._reject(request, pixazo.NAME, b"", "bad webhook token", trusted=False)
            raise ApiError(401, "unauthorized", "the webhook token is not valid")
        return await self._intake(request, pixazo.NAME, None, pixazo.parse_status)

    async def apiframe(self, request: web.Request) -> web.Response:
        api_key = self.settings.provider(apiframe.NAME).api_key

        def authenticate(body: bytes) -> None:
            reason = apiframe.refusal(api_key, request.headers.get(apiframe.SIGNATURE_HEADER), body)
            if reason is not None:
                raise _Unauthorized(reason)

        return await self._intake(request, apiframe.NAME, authenticate, apiframe.parse)

    async def _intake(
        self,
        request: web.Request,
        provider: str,
        authenticate: Callable[[bytes], None] | None,
        parse: Callable[[Any], Observation],
    ) -> web.Response:
        started = time.perf_counter()
        try:
            return await self._take(request, provider, authenticate, parse)
        finally:
            self.metrics.webhook_handled(provider, time.perf_counter() - started)

    async def _take(
        self,
        request: web.Request,
        provider: str,
        authenticate: Callable[[bytes], None] | None,
        parse: Callable[[Any], Observation],
    ) -> web.Response:
        limit = self.settings.max_body_bytes
        trusted = authenticate is None  # the token in the path was checked already
        try:
            length = bodies.check_length(request, limit)  # a huge body is 413 before 415
            bodies.check_json_type(request)
            body = await bodies.read_body(request, limit, length)
        except ApiError as exc:
            await self._reject(request, provider, b"", exc.message, trusted)
            raise
        try:
            if authenticate is not None:
                authenticate(body)
            trusted = True
            observation = parse(bodies.parse_json(body))
        except _Unauthorized as exc:
            await self._reject(request, provider, body, str(exc), trusted)
            raise ApiError(401, "unauthorized", str(exc)) from exc
        except ApiError as exc:
            await self._reject(request, provider, body, exc.message, trusted)
            raise
        except PayloadError as exc:
            await self._reject(request, provider, body, str(exc), trusted)
            raise ApiError(400, "invalid_payload", str(exc)) from exc
        except Exception as exc:  # a payload the parser should have refused: kept, not lost
            log.exception("webhook_unreadable", provider=provider)
            await self._reject(request, provider, body, f"could not be read: {type(exc).__name__}", trusted)
            raise ApiError(400, "invalid_payload", "jobtrail could not read this payload") from exc
        delivery = self.scrub.delivery(request, "webhook", provider, body, observation.job_id)
        result = await self.store.intake(delivery, [observation])
        verdict = result.verdict._value_  # not .value: an enum property, on the hot path
        self.metrics.delivery(provider, "webhook", verdict)
        if self.log_each:
            log.debug(
                "webhook_received",
                provider=provider,
                job_id=observation.job_id,
                delivery_id=result.delivery_id,
                verdict=verdict,
            )
        return web.Response(
            body=b'{"delivery_id": %d, "verdict": "%s"}' % (result.delivery_id, verdict.encode()),
            headers=_JSON,
        )

    async def _reject(
        self, request: web.Request, provider: str, body: bytes, reason: str, trusted: bool
    ) -> None:
        """Keep a refused request as a rejected delivery; from a sender not authenticated,
        cut, and only within its source's budget (else 429, counted, not kept)."""
        delivery = self.scrub.delivery(
            request, "webhook", provider, body if trusted else body[:REJECTED_BODY_KEPT], None
        )
        if not trusted:
            cost = 256 + len(delivery.body) + sum(len(k) + len(v) for k, v in delivery.headers.items())
            wait = self.budget.spend(request.remote, cost)
            if wait is not None:
                self.metrics.refusal_not_kept(provider)
                raise ApiError(
                    429,
                    "rate_limited",
                    "too many refused requests from this address; they are no longer kept",
                    retry_after=wait,
                )
        await self.store.reject(delivery, reason)
        self.metrics.delivery(provider, "webhook", "rejected")
        log.warning("webhook_rejected", provider=provider, reason=reason, remote=request.remote)


_JSON = {"Content-Type": "application/json"}


async def unknown_webhook(request: web.Request) -> web.Response:
    provider = request.match_info["provider"]
    if provider == pixazo.NAME:
        raise ApiError(401, "unauthorized", "the Pixazo route needs its token: /webhooks/pixazo/{token}")
    if provider == apiframe.NAME:  # any method but POST
        raise ApiError(405, "method_not_allowed", "webhooks are sent with POST")
    raise ApiError(404, "unknown_provider", f"no webhook route for provider {provider[:64]!r}")
