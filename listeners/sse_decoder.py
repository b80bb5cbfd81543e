"""A server-sent events decoder: bytes in, events out. Pure; no I/O.

It follows the WHATWG parsing rules where httpx-sse 0.4 does not (SSE.md):

- lines end with CRLF, LF or CR, also when a CRLF pair or a UTF-8 sequence is split
  across chunks; one leading BOM is stripped, also when split;
- a block whose data buffer is empty (only comments, only `id:`, only `retry:`) is not
  an event; an unterminated block at the end of the stream is never dispatched;
- `retry:` counts only when it is all ASCII digits; `id:` containing NUL is ignored;
  the last event id survives events and reconnects (pass it back in);
- a line split over many chunks is joined once, so a multi-megabyte event decodes in
  linear time;
- memory is bounded: a line longer than `MAX_LINE` characters, or an event whose data
  exceeds `MAX_EVENT`, is a protocol error (`SSEProtocolError`): the listener drops the
  connection and reconnects rather than buffer without end.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff"
MAX_LINE = 1024 * 1024  # characters in one line
MAX_EVENT = 16 * 1024 * 1024  # characters of data in one event


class SSEProtocolError(ValueError):
    """The stream broke a bound no well-behaved server reaches."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: str
    id: str


class SSEDecoder:
    """Feed it chunks with `feed`; it returns the events each chunk completed.

    `retry` is the last valid reconnection time (milliseconds) the server sent, or None.
    `last_event_id` is the id to send as `Last-Event-ID` on the next connection.
    """

    def __init__(self, last_event_id: str = "") -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._started = False
        self._cr_pending = False
        self._partial: list[str] = []
        self._partial_size = 0
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._id = last_event_id
        self.last_event_id = last_event_id
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._utf8.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            if text[0] == _BOM:
                text = text[1:]
        if self._cr_pending and text[:1] == "\n":
            text = text[1:]
        self._cr_pending = text[-1:] == "\r"
        parts = _LINE_END.split(text)
        if len(parts) == 1:
            if parts[0]:
                self._partial.append(parts[0])
                self._partial_size += len(parts[0])
                if self._partial_size > MAX_LINE:
                    raise SSEProtocolError(f"a line longer than {MAX_LINE} characters")
            return []
        if self._partial:
            self._partial.append(parts[0])
            parts[0] = "".join(self._partial)
        tail = parts.pop()
        self._partial = [tail] if tail else []
        self._partial_size = len(tail)
        if self._partial_size > MAX_LINE:
            raise SSEProtocolError(f"a line longer than {MAX_LINE} characters")
        events: list[SSEEvent] = []
        for line in parts:
            self._line(line, events)
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if len(line) > MAX_LINE:
            raise SSEProtocolError(f"a line longer than {MAX_LINE} characters")
        if line[0] == ":":
            return
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data_size += len(value)
            if self._data_size > MAX_EVENT:
                raise SSEProtocolError(f"an event with more than {MAX_EVENT} characters of data")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and len(value) <= 12 and value.isascii() and value.isdigit():
            self.retry = int(value)

    def _dispatch(self, events: list[SSEEvent]) -> None:
        self.last_event_id = self._id
        if self._data:
            events.append(SSEEvent(self._event or "message", "\n".join(self._data), self._id))
        self._data = []
        self._data_size = 0
        self._event = ""
