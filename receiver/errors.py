"""Errors as the API shows them: an HTTP status and `{"error": code, "message": sentence}`."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from jobtrail.store.base import StoreError, StoreUnavailable

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    503: "store_unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str, *, retry_after: float | None = None) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return web.json_response({"error": code, "message": message}, status=status, headers=headers or None)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason or code)
    except StoreUnavailable as exc:  # nothing was taken, or a retry is deduplicated: try again
        log.warning("store_unavailable", path=request.rel_url.path, reason=str(exc))
        return error_response(
            503,
            "store_unavailable",
            "jobtrail cannot record this right now; nothing was lost, send it again",
            retry_after=exc.retry_after,
        )
    except StoreError:
        log.exception("store_failed", method=request.method, path=request.rel_url.path)
        return error_response(500, "store_error", "jobtrail's store could not handle the request")
    except Exception:
        log.exception("request_failed", method=request.method, path=request.rel_url.path)
        return error_response(500, "internal", "jobtrail could not handle the request")
