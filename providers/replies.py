"""What a provider's answer to a status request means, as a value. Pure.

The generic reading of an HTTP answer (each provider may override parts of it):

- 200 with a readable document: `Observed`; an unreadable one: `Unreadable` (kept, retried);
- 404 and other 4xx: `Missing`, the provider does not know or refuses this job;
- 401, 402, 403: `Refused`, the account or key is wrong for every job of the provider;
- 429: `Throttled`, slow down the whole provider, honouring `Retry-After`;
- 408 and 5xx: `Unavailable`, try this job again later.

The provider's own words (its error body) are kept in every case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from jobtrail.core.model import Observation
from jobtrail.core.retry import retry_after_seconds
from jobtrail.providers.fields import PayloadError

MAX_WORDS = 500


@dataclass(frozen=True, slots=True)
class HttpCall:
    """A request to a provider, built by its module, sent by a listener."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None


@dataclass(frozen=True, slots=True)
class Observed:
    observation: Observation


@dataclass(frozen=True, slots=True)
class Unreadable:
    reason: str


@dataclass(frozen=True, slots=True)
class Missing:
    status: int
    words: str


@dataclass(frozen=True, slots=True)
class Refused:
    status: int
    words: str


@dataclass(frozen=True, slots=True)
class Throttled:
    retry_after: float | None
    words: str


@dataclass(frozen=True, slots=True)
class Unavailable:
    status: int | None
    words: str
    retry_after: float | None = None


Reply = Observed | Unreadable | Missing | Refused | Throttled | Unavailable


def words(body: bytes) -> str:
    """The provider's explanation from an error body: its `error`/`message`/`details`
    fields when JSON, else the text, cut to a readable length."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:MAX_WORDS].decode("utf-8", "replace").strip()
    if isinstance(doc, Mapping):
        parts = [
            str(doc[k])
            for k in ("error", "error_message", "message", "code", "details", "detail")
            if doc.get(k) not in (None, "")
        ]
        if parts:
            return ": ".join(parts)[:MAX_WORDS]
    return body[:MAX_WORDS].decode("utf-8", "replace").strip()


def read_reply(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    parse: Callable[[Any], Observation],
    now: datetime,
) -> Reply:
    """The generic reading of a status answer (see the module docstring)."""
    if status == 200:
        try:
            return Observed(parse(orjson.loads(body)))
        except orjson.JSONDecodeError:
            return Unreadable("the status answer is not JSON")
        except PayloadError as exc:
            return Unreadable(f"the status document is not understood: {exc}")
    said = words(body) or f"HTTP {status}"
    if status in (401, 402, 403):
        return Refused(status, said)
    if status == 429:
        return Throttled(retry_after_seconds(headers.get("Retry-After"), now), said)
    if status == 408 or status >= 500:
        return Unavailable(status, said, retry_after_seconds(headers.get("Retry-After"), now))
    if 400 <= status < 500:
        return Missing(status, said)
    return Unreadable(f"unexpected HTTP {status} to a status request")
