"""Reading fields out of provider payloads, with errors that say which field is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

MAX_JOB_ID_LENGTH = 256
MAX_TEXT_LENGTH = 4096


class PayloadError(ValueError):
    """A payload that cannot be understood; the message names the field."""


def job_id(value: Any, field: str) -> str:
    """A job id: a non-empty printable string of at most 256 characters."""
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{field} must be a non-empty string")
    if len(value) > MAX_JOB_ID_LENGTH:
        raise PayloadError(f"{field} is longer than {MAX_JOB_ID_LENGTH} characters")
    if not value.isprintable() or "/" in value:
        raise PayloadError(f"{field} contains control characters or '/'")
    return value


def text(value: Any, field: str) -> str | None:
    """Optional free text (an error message); long text is cut, not refused, and a NUL
    becomes U+FFFD (no database takes it in text, and PostgreSQL none at all). An object
    or list is shown as JSON, and one nested deeper than a JSON encoder goes (`str()` of
    1,000 levels raises RecursionError) says so instead: the report is still taken."""
    if value is None:
        return None
    if isinstance(value, str):
        cut = value[:MAX_TEXT_LENGTH]
    elif isinstance(value, bool | int | float):
        cut = str(value)[:MAX_TEXT_LENGTH]
    elif isinstance(value, Mapping | list):
        try:
            cut = orjson.dumps(value).decode()[:MAX_TEXT_LENGTH]
        except orjson.JSONEncodeError:
            cut = f"({field} is nested too deeply to show; see the raw delivery)"
    else:
        raise PayloadError(f"{field} must be a string")
    return cut.replace("\0", "\ufffd") if "\0" in cut else cut


def progress(value: Any, field: str) -> int | None:
    """A percentage 0-100, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{field} must be a number from 0 to 100")
    if not 0 <= value <= 100:
        raise PayloadError(f"{field} must be a number from 0 to 100")
    return int(value)


def url(value: Any, field: str) -> str:
    """An http(s) URL, printable (a control character has no place in one)."""
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise PayloadError(f"{field} must be an http(s) URL")
    if not value.isprintable():
        raise PayloadError(f"{field} contains control characters")
    return value


def timestamp(value: Any, field: str) -> datetime | None:
    """ISO 8601 (`2026-05-22T13:17:32.110Z`), `2026-05-22 13:19:23` (UTC) or Unix seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise PayloadError(f"{field} is not a timestamp")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise PayloadError(f"{field} is not a valid Unix time") from exc
    if not isinstance(value, str):
        raise PayloadError(f"{field} is not a timestamp")
    raw = value.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    elif len(raw) > 10 and "+" not in raw and "-" not in raw[10:]:
        # A time without an offset is UTC. Said in the text, not by `.replace(tzinfo=UTC)`
        # after parsing: replace takes keywords, about 9,000 instructions, once per delivery.
        raw += "+00:00"
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise PayloadError(f"{field} is not a timestamp: {value[:64]!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    if type(value) is dict:  # what JSON parsers return; skips the slower ABC check
        return value
    if not isinstance(value, Mapping):
        raise PayloadError(f"{what} must be a JSON object")
    return value
