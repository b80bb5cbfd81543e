"""Rendering the console's pages: one Jinja2 environment, autoescaped, and the headers
every page carries (a strict Content-Security-Policy: scripts and styles from this origin
only, so text a provider sent can never run even if it reached a page unescaped)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import orjson
from aiohttp import web

from jobtrail.store.base import Store

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(at: datetime | str | None) -> str:
    """`2026-12-05 22:17:58.123Z`: UTC, to the millisecond (a timeline's reports often
    share a second), the zone shown. An ISO 8601 string is read first."""
    if at is None or at == "":
        return ""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d}Z"


def pretty(value: Any) -> str:
    """JSON for people: indented, keys in order, non-ASCII kept (orjson: a job page
    shows a thousand of these, and the stdlib's indenting encoder is Python)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str).decode()


def size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,  # every template, whatever its name: nothing a provider says is trusted
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
_ENV.filters.update(when=when, pretty=pretty, size=size, part=lambda text: quote(str(text), safe=""))


def html(name: str, context: Mapping[str, Any], *, status: int = 200) -> web.Response:
    body = _ENV.get_template(name).render(context)
    return web.Response(text=body, status=status, content_type="text/html", headers=HEADERS)


class Chart:
    """Events per minute over the last hours, as the bars of an inline SVG (no script)."""

    WIDTH, HEIGHT = 720, 120

    def __init__(self, counts: Sequence[tuple[datetime, int]], now: datetime, hours: int) -> None:
        self.hours = hours
        start = now.astimezone(UTC).replace(second=0, microsecond=0) - timedelta(hours=hours)
        minutes = hours * 60
        by_minute = dict(counts)
        self.values = [by_minute.get(start + timedelta(minutes=m + 1), 0) for m in range(minutes)]
        self.total = sum(self.values)
        self.peak = max(self.values, default=0)
        self.start = start
        width = self.WIDTH / minutes
        self.bars = [
            (round(m * width, 2), round(self.HEIGHT * (1 - v / self.peak), 2), max(round(width, 2), 0.5), v)
            for m, v in enumerate(self.values)
            if v and self.peak
        ]


class EventRate:
    """Events per minute for the overview's chart, remembered per process: a minute that
    has passed (by more than one more, for commits stamped just before its end) is
    counted once, so each overview counts only the last minutes, not six hours of log."""

    SLACK = timedelta(minutes=2)

    def __init__(self) -> None:
        self._done: dict[datetime, int] = {}
        self._counted_until: datetime | None = None  # minutes before this one are in _done

    async def per_minute(self, store: Store, now: datetime, hours: int) -> list[tuple[datetime, int]]:
        start = now.astimezone(UTC).replace(second=0, microsecond=0) - timedelta(hours=hours)
        settled = now.astimezone(UTC).replace(second=0, microsecond=0) - self.SLACK
        since = max(start, self._counted_until) if self._counted_until else start
        fresh = await store.events_per_minute(since)
        for minute, n in fresh:
            if minute < settled:
                self._done[minute] = n
        self._counted_until = max(settled, since)
        self._done = {minute: n for minute, n in self._done.items() if minute >= start}
        return sorted({**self._done, **{m: n for m, n in fresh if m >= settled}}.items())


RATE = web.AppKey("console_event_rate", EventRate)
