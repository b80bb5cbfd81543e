"""`POST /api/jobs/submit`: start a job at a provider with its push channel wired, and
track it. The parameters are checked before any request is sent (providers/submission);
a provider answering 429 or 503 is asked again a few times.

Once the provider has taken the job, it exists (and costs money) whatever happens here:
recording it is retried while the store is unavailable (the intake is idempotent), and
if it still cannot be recorded, the answer and the log name the provider's job id, so it
can be tracked by hand (`POST /api/jobs`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import structlog
from aiohttp import web

from jobtrail.core.model import Delivery, IntakeResult, Observation, utcnow
from jobtrail.core.retry import retry_after_seconds
from jobtrail.providers import catalog, submission
from jobtrail.providers.replies import HttpCall
from jobtrail.receiver import bodies
from jobtrail.receiver.answer import json_answer
from jobtrail.receiver.errors import ApiError, not_configured
from jobtrail.receiver.keys import CLIENT, HEALTH, METRICS, SCRUB, SETTINGS, STORE
from jobtrail.receiver.views import one_job
from jobtrail.runtime import http
from jobtrail.runtime.health import State
from jobtrail.store.base import Store, StoreError, StoreUnavailable

STREAM_WAIT = 10.0
RETRIES = 5
RECORD_ATTEMPTS = 6  # over about 15 s: 0.5, 1, 2, 4, 8 s apart (or as the store asks)
TIMEOUT = aiohttp.ClientTimeout(total=30)

log = structlog.get_logger(__name__)


def setup(app: web.Application) -> None:
    from jobtrail.receiver.api import guarded

    app.router.add_post("/api/jobs/submit", guarded(submit_job))
    app.cleanup_ctx.append(_client)


async def _client(app: web.Application) -> AsyncIterator[None]:
    app[CLIENT] = http.new_session(16)
    yield
    await app[CLIENT].close()


async def submit_job(request: web.Request) -> web.Response:
    settings, store = request.app[SETTINGS], request.app[STORE]
    bodies.check_json_type(request)
    raw = await bodies.read_body(request, 64 * 1024)
    doc = bodies.parse_json(raw)
    provider, video = doc.get("provider"), doc.get("video")
    options = {k: v for k, v in doc.items() if k not in ("provider", "video")}
    try:
        options = submission.validate(str(provider), str(video) if video is not None else "", options)
        call = submission.submit_call(
            str(provider),
            settings.provider(str(provider)),
            str(video),
            options,
            submission.Callback(settings.public_url, settings.webhook_token),
        )
    except submission.InvalidSubmission as exc:
        raise ApiError(400, "invalid_parameter", str(exc)) from exc
    name = str(provider)
    if not settings.provider(name).active:
        raise ApiError(409, "provider_not_configured", not_configured(name, "submit to"))
    if catalog.PROVIDERS[name].stream_first:
        await _stream_connected(request, name)
    try:
        status, answer = await _send(request.app[CLIENT], call)
        job_id, params = submission.read_submitted(name, status, answer, options)
    except (aiohttp.ClientError, TimeoutError, http.AnswerTooLarge) as exc:
        raise ApiError(
            502, "provider_unreachable", f"{name} could not be reached: {type(exc).__name__}"
        ) from exc
    except submission.SubmitRefused as exc:
        raise ApiError(502, "provider_refused", f"{name} refused the job: {exc}") from exc
    delivery = request.app[SCRUB].delivery(request, "api", name, raw, job_id)
    observation = Observation(
        name, job_id, "tracked", params={**params, "submitted": {"video": video, **options}}
    )
    try:
        result = await _record(store, delivery, observation)
    except StoreError as exc:
        log.error("submitted_job_not_recorded", provider=name, job_id=job_id, error=str(exc))
        raise ApiError(
            503,
            "job_not_recorded",
            f"{name} accepted the job as {job_id!r}, but jobtrail could not record it; track it with "
            f'POST /api/jobs {{"provider": "{name}", "id": "{job_id}"}} once jobtrail is ready',
        ) from exc
    request.app[METRICS].delivery(name, "api", result.verdict.value)
    assert result.job is not None
    return json_answer(await one_job(store, result.job), status=201)


async def _record(store: Store, delivery: Delivery, observation: Observation) -> IntakeResult:
    """Intake the tracked job, again while the store is unavailable (a retry of a write
    that landed anyway is a duplicate: harmless)."""
    for attempt in range(RECORD_ATTEMPTS):
        try:
            return await store.intake(delivery, [observation])
        except StoreUnavailable as exc:
            if attempt == RECORD_ATTEMPTS - 1:
                raise
            await asyncio.sleep(max(0.5 * 2**attempt, min(exc.retry_after, 5.0)))
    raise AssertionError("unreachable")


async def _send(client: aiohttp.ClientSession, call: HttpCall) -> tuple[int, bytes]:
    """Send the submit; a 429 or 503 means it was not taken, so it is sent again (at most
    `RETRIES` times, waiting as asked up to 5 s). Nothing else is retried: a submit that
    may have been taken must not start a second job."""
    for attempt in range(RETRIES + 1):
        answer = await http.send(client, call, TIMEOUT)
        if answer.status not in (429, 503) or attempt == RETRIES:
            return answer.status, answer.body
        wait = retry_after_seconds(answer.headers.get("Retry-After"), utcnow())
        await asyncio.sleep(min(5.0, wait if wait is not None else 0.5 * 2**attempt))
    raise AssertionError("unreachable")


async def _stream_connected(request: web.Request, name: str) -> None:
    """A stream without replay (Oxen's): submit only once it is connected."""
    component = request.app[HEALTH].component(f"{name}.sse", "sse")
    for _ in range(int(STREAM_WAIT / 0.05)):
        if component.state is State.CONNECTED:
            return
        await asyncio.sleep(0.05)
    raise ApiError(
        503, "stream_not_connected", f"the {name} event stream is not connected; try again shortly"
    )
