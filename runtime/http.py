"""The HTTP client side: sessions, sending a provider request, small answers, headers
worth keeping. Used by the pollers, the dispatcher's URL refresh and job submission."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from jobtrail.providers import catalog
from jobtrail.providers.replies import HttpCall

MAX_ANSWER = 4 * 1024 * 1024
USER_AGENT = "jobtrail"
REDACTED = b"[redacted]"


class AnswerTooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


def new_session(limit: int) -> aiohttp.ClientSession:
    """One session per provider: its own connection pool, capped at `limit`."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit),
        headers={"User-Agent": USER_AGENT},
        raise_for_status=False,
        auto_decompress=True,
    )


async def send(session: aiohttp.ClientSession, call: HttpCall, limits: aiohttp.ClientTimeout) -> Answer:
    """Send `call` and read its (small) answer, with the key it sent taken out if it
    echoes it (`unechoed`); the headers kept are `kept_headers`."""
    async with session.request(
        call.method, call.url, headers=dict(call.headers), json=call.json, timeout=limits
    ) as response:
        return Answer(response.status, kept_headers(response), unechoed(call, await read_small(response)))


def unechoed(call: HttpCall, body: bytes) -> bytes:
    """`body` without the credential `call` sent: an error page that quotes the key it was
    given would otherwise carry it into the delivery log, a job's error and `/readyz`."""
    for name, value in call.headers.items():
        lower = name.lower()
        if lower == "authorization":
            value = value.partition(" ")[2] or value
        elif lower not in catalog.KEY_HEADERS:
            continue
        secret = value.encode()
        if len(secret) >= 4 and secret in body:
            body = body.replace(secret, REDACTED)
    return body


async def read_small(response: aiohttp.ClientResponse) -> bytes:
    """The body of an answer that should be small (a status document, an error)."""
    body = await response.content.read(MAX_ANSWER + 1)
    if len(body) > MAX_ANSWER:
        raise AnswerTooLarge(f"the answer is larger than {MAX_ANSWER} bytes")
    return body


def kept_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    """The answer headers worth keeping with the raw delivery."""
    keep = ("Content-Type", "Content-Length", "Retry-After", "Date")
    return {name: response.headers[name] for name in keep if name in response.headers}
