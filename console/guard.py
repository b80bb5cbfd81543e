"""Who may see a console page and who may act: sessions, the login form, CSRF.

With `JOBTRAIL_API_TOKEN` set, a page needs a session: without one the browser is sent
to the login form, whose one field takes the token. Without a token the console is
open (as the API is) and a session is started silently, only to bind CSRF tokens.

Every action is a POST carrying the session's CSRF token in a form field; one without
it (or with another session's) is refused with 403, as is one whose `Origin` is another
site's. The cookie is HttpOnly, SameSite=Strict, Secure when the request came over
https (directly or, as `X-Forwarded-Proto` says, through a proxy). Logging in is
limited to LOGINS_PER_MINUTE tries a minute per source address: guessing is slow.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from typing import NamedTuple
from urllib.parse import quote, unquote, urlsplit

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from jobtrail.console.render import html
from jobtrail.receiver.auth import COOKIE, SESSION_SECONDS
from jobtrail.receiver.budget import RefusalBudget
from jobtrail.receiver.errors import ApiError
from jobtrail.receiver.keys import SESSIONS, SETTINGS

MAX_FORM = 16 * 1024
LOGINS_PER_MINUTE = 10  # per source address (an IPv6 /64), 16 times that from all
LOGINS = web.AppKey("console_logins", RefusalBudget)


NOTICE = "jobtrail_notice"


class Session(NamedTuple):
    csrf: str
    logged_in: bool  # a token is configured and this session proved it (shows "Log out")
    notice: str | None = None  # what the last action did, shown once above the next page


Page = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
Action = Callable[[web.Request, Session, MultiDictProxy[str]], Awaitable[web.StreamResponse]]


def page(handler: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A GET page: run with the session, or send the browser to log in first."""

    @functools.wraps(handler)
    async def check(request: web.Request) -> web.StreamResponse:
        sessions, token = request.app[SESSIONS], request.app[SETTINGS].api_token
        nonce = sessions.nonce(request.cookies.get(COOKIE))
        if nonce is not None:
            notice = unquote(request.cookies.get(NOTICE, ""))[:500] or None
            response = await handler(request, Session(sessions.csrf(nonce), bool(token), notice))
            if notice:
                response.del_cookie(NOTICE, path="/ui/")
            return response
        if token:
            raise web.HTTPSeeOther(f"/ui/login?next={quote(request.path_qs, safe='')}")
        cookie = sessions.issue()
        response = await handler(request, Session(sessions.csrf(sessions.nonce(cookie) or ""), False))
        _set_cookie(request, response, cookie)
        return response

    return check


def action(handler: Action) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A POST: refused unless it comes from this origin with the session's CSRF token;
    a field it cannot take (`ApiError`) is answered with a page saying so."""

    @functools.wraps(handler)
    async def check(request: web.Request) -> web.StreamResponse:
        sessions = request.app[SESSIONS]
        _same_origin(request)
        nonce = sessions.nonce(request.cookies.get(COOKIE))
        if nonce is None:
            return refused("Your session has ended. Log in again, then repeat what you did.", 403)
        form = await read_form(request)
        if not sessions.csrf_matches(nonce, form.get("csrf", "")):
            return refused("This form is missing its CSRF token, or it belongs to another session.", 403)
        session = Session(sessions.csrf(nonce), bool(request.app[SETTINGS].api_token))
        try:
            return await handler(request, session, form)
        except ApiError as exc:  # a field the action could not take: said on a page
            return refused(exc.message, exc.status)

    return check


async def read_form(request: web.Request) -> MultiDictProxy[str]:
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=request.content_length)
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise web.HTTPUnsupportedMediaType(text="a console action is a form post")
    form = await request.post()
    return MultiDictProxy(MultiDict((k, v) for k, v in form.items() if isinstance(v, str)))


def done(target: str, notice: str) -> web.HTTPSeeOther:
    """The answer to an action that worked: back to `target` (a console path), which
    shows `notice` once."""
    response = web.HTTPSeeOther(_next(target))
    response.set_cookie(NOTICE, quote(notice), max_age=60, path="/ui/", httponly=True, samesite="Strict")
    return response


def refused(reason: str, status: int) -> web.Response:
    return html("refused.html", {"reason": reason, "session": None}, status=status)


def _same_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return  # older browsers send none on same-origin posts; the CSRF token still holds
    hosts = {request.host, request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()}
    if urlsplit(origin).netloc not in hosts - {""}:  # a proxy may pass its own Host on
        raise web.HTTPForbidden(text="a console action from another site")


def _set_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_https(request),
    )


def _https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _next(raw: str | None) -> str:
    """Where to go after logging in: a console path of this site, nothing else (never
    `//evil.example` or `/ui/../`)."""
    if raw and raw.startswith("/ui/") and not raw.startswith("//") and ".." not in raw and "\\" not in raw:
        return raw
    return "/ui/"


async def login_form(request: web.Request) -> web.StreamResponse:
    if not request.app[SETTINGS].api_token:
        raise web.HTTPSeeOther("/ui/")
    return html("login.html", {"next": _next(request.query.get("next")), "error": None, "session": None})


async def login(request: web.Request) -> web.StreamResponse:
    """The token in the form's one field: right, a session starts; wrong, the form again."""
    _same_origin(request)
    token = request.app[SETTINGS].api_token
    form = await read_form(request)
    target = _next(form.get("next"))
    if not token:
        raise web.HTTPSeeOther("/ui/")
    wait = request.app[LOGINS].spend(request.remote, 1)
    if wait is not None:  # guessing the token: a few tries a minute
        context = {
            "next": target,
            "error": "Too many attempts: wait a minute, then try again.",
            "session": None,
        }
        response = html("login.html", context, status=429)
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    given = form.get("token", "")
    if not hmac.compare_digest(given.encode(errors="replace"), token.encode()):
        context = {"next": target, "error": "That is not the API token.", "session": None}
        return html("login.html", context, status=401)
    response = web.HTTPSeeOther(target)
    _set_cookie(request, response, request.app[SESSIONS].issue())
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    _same_origin(request)
    sessions = request.app[SESSIONS]
    cookie = request.cookies.get(COOKIE)
    nonce = sessions.nonce(cookie)
    form = await read_form(request)
    if nonce is None or not sessions.csrf_matches(nonce, form.get("csrf", "")):
        return refused("This form is missing its CSRF token, or it belongs to another session.", 403)
    assert cookie is not None
    sessions.end(cookie)
    response = web.HTTPSeeOther("/ui/login" if request.app[SETTINGS].api_token else "/ui/")
    response.del_cookie(COOKIE, path="/")
    raise response
