"""Reading query and body parameters a client controls, with explicit bounds.

Every function answers a value or raises `ApiError(400, "bad_parameter", ...)` that names
the parameter: no client input reaches `int()` or `datetime` arithmetic unchecked. Digits
are ASCII only (`"²".isdigit()` is true, `int("²")` fails) and numbers are held to what a
database integer takes; times are parsed from at most 64 characters and moved to UTC here,
where an offset that carries them past year 1 or 9999 is a 400, not an `OverflowError`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime

from multidict import MultiMapping

from jobtrail.receiver.errors import ApiError

MAX_INT = 2**62  # below any backend's integer limit, above any sequence number or id
_DIGITS = re.compile(r"[0-9]{1,19}")


def whole(raw: str | None, name: str, default: int, high: int = MAX_INT, low: int = 0) -> int:
    """A whole number from `low` to `high` written in ASCII digits, or `default` if absent."""
    if raw is None:
        return default
    value = int(raw) if _DIGITS.fullmatch(raw) else -1
    if not low <= value <= high:
        raise ApiError(400, "bad_parameter", f"{name} must be a whole number from {low} to {high}")
    return value


def known(query: Mapping[str, str] | MultiMapping[str], allowed: Collection[str]) -> None:
    """Refuse a query parameter the route does not take (a typo would otherwise be ignored
    and answer with everything), and one given twice (which of them would count?)."""
    for key in query:
        if key not in allowed:
            shown = ", ".join(sorted(allowed)) or "none"
            raise ApiError(
                400, "unknown_parameter", f"unknown query parameter {key[:64]!r}; this route takes: {shown}"
            )
        if isinstance(query, MultiMapping) and len(query.getall(key)) > 1:
            raise ApiError(400, "bad_parameter", f"{key} is given more than once")


def choice(raw: str | None, name: str, allowed: Iterable[str]) -> str | None:
    """One of `allowed`, or None if absent."""
    options = tuple(allowed)
    if raw is not None and raw not in options:
        raise ApiError(400, "bad_parameter", f"{name} must be one of {', '.join(options)}")
    return raw


def time(raw: object, name: str) -> datetime | None:
    """An ISO 8601 time as a UTC datetime (no offset means UTC), or None if absent."""
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > 64:
        raise ApiError(400, "bad_parameter", f"{name} must be an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise ApiError(
            400, "bad_parameter", f"{name} must be an ISO 8601 time between years 1 and 9999"
        ) from None


def flag(raw: str | None, name: str) -> bool | None:
    """`true` or `false` (also `1`, `0`), or None if absent."""
    if raw is None:
        return None
    if raw not in _FLAGS:
        raise ApiError(400, "bad_parameter", f"{name} must be true or false")
    return _FLAGS[raw]


_FLAGS = {"true": True, "1": True, "false": False, "0": False}


def text(raw: str | None, name: str, longest: int = 128) -> str | None:
    """A printable search text of 1 to `longest` characters, or None if absent."""
    if raw is None:
        return None
    if not 0 < len(raw) <= longest or not raw.isprintable():
        raise ApiError(400, "bad_parameter", f"{name} must be printable text of 1 to {longest} characters")
    return raw


def name(raw: object, what: str, longest: int = 64) -> str | None:
    """A short printable name (a sink, a model), or None if absent."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not 0 < len(raw) <= longest or not raw.isprintable():
        raise ApiError(400, "bad_parameter", f"{what} must be a printable name of 1 to {longest} characters")
    return raw
