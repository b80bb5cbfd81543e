"""The HTTP connection, made to answer every client with jobtrail's JSON errors.

aiohttp's own connection handler answers what its parser refuses (a bad request line, a
header with a control byte, Content-Length beside chunked, a line over 8,190 bytes) in
plain text that quotes the offending bytes, logs them with a traceback (a webhook token
in a request line, an API token in a header, in the clear), and drops a client that
half-closes (sends its request, then shuts its side) without an answer. `Connection`
and `Runner` change those things and nothing else:

- a refused request is answered `{"error": "bad_request", "message": ...}` (415 for a
  content encoding jobtrail cannot decode) with a sentence per kind of fault, never the
  bytes; it is logged as `http_refused` with the kind and counted in `/metrics`;
- after a half-close, the requests already sent are answered; a body cut short by it ends
  as an incomplete body (a 400 the route keeps); then the connection closes;
- an `Expect` other than 100-continue is a 417 in JSON (aiohttp's quotes the header).

`Runner` is `web.AppRunner` with this connection; `jobtrail serve` runs the app with it.
It leans on aiohttp 3.x internals (`RequestHandler._messages`, `AppRunner._make_server`,
`Server._kwargs`), so pyproject holds aiohttp below 4, and tests/integration/
test_hostile.py fails if a release changes them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from jobtrail.receiver.errors import HTTP_CODES, error_response, refusal

log = structlog.get_logger(__name__)


class _CutShort(ConnectionResetError):
    """The client half-closed before its body was complete."""


class Connection(RequestHandler):
    counted: Callable[[str], None] | None = None  # told the kind of each refused request
    _receiving: Any = None  # the body of the latest request parsed: only it can be incomplete

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages:  # still queued: the loop that takes them runs after this returns
            self._receiving = self._messages[-1][1]

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp logs "Unhandled exception" with a traceback when a body a route did
        not read fails to decode as aiohttp drains it after the answer: a client's fault,
        logged as one line, not an error anyone can make jobtrail print at will."""
        exc = kw.get("exc_info")
        if isinstance(exc, RequestPayloadError | HttpProcessingError | ConnectionError):
            log.info("request_body_unreadable", error=type(exc).__name__)
            return
        super().log_exception(*args, **kw)

    def eof_received(self) -> bool:  # type: ignore[override]  # asyncio's protocol says bool
        """The client sent its last byte (a half-close): answer what it sent, then close.
        True keeps our side open for the answer (asyncio closes it on a false value)."""
        payload = self._receiving
        if payload is not None and not payload.is_eof():
            payload.set_exception(_CutShort("the client closed its side before the body was complete"))
            payload.feed_eof()  # ended: aiohttp does not wait to drain it after the answer
        self.close()
        return True

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        code, reason, sentence = refusal(exc, status)
        if code >= 500:
            log.error("request_failed", remote=request.remote, error=type(exc).__name__ if exc else None)
        else:
            log.info("http_refused", remote=request.remote, reason=reason, status=code)
            if self.counted is not None:
                self.counted(reason)
        if request.writer.output_size > 0:  # an answer was under way: nothing can follow it
            raise ConnectionError("the answer was sent already")
        response = error_response(code, HTTP_CODES.get(code, "bad_request"), sentence)
        response.force_close()
        return response


class _Server(web.Server):
    counted: Callable[[str], None]

    def __call__(self) -> RequestHandler:
        handler = Connection(self, loop=self._loop, **self._kwargs)
        handler.counted = self.counted
        return handler


def _expecting(handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]) -> Any:
    """aiohttp checks `Expect` before any middleware runs, and answers anything but
    100-continue with a 417 in plain text that quotes the header: here it is JSON."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        expect = request.headers.get("Expect")
        if expect is not None and expect.lower() != "100-continue":
            return error_response(
                417, "expectation_failed", "the only expectation understood is 100-continue"
            )
        return await handler(request)

    return handle


class Runner(web.AppRunner):
    """`web.AppRunner` whose connections are `Connection`s; `counted(reason)` is told of
    each request the parser refused."""

    def __init__(self, app: web.Application, counted: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._counted = counted

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app's server, made by aiohttp (its handler, request factory and settings),
        # with one change: its connections are ours. aiohttp offers no parameter for it.
        server.__class__ = _Server
        server.counted = self._counted  # type: ignore[attr-defined]
        server.request_handler = _expecting(server.request_handler)
        return server
