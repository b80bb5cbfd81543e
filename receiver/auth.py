"""Bearer tokens (the API's `JOBTRAIL_API_TOKEN`, the scraper's `JOBTRAIL_METRICS_TOKEN`)
and the console's sessions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from aiohttp import web


def bearer_matches(request: web.Request, token: str) -> bool:
    """Whether the request says `Authorization: Bearer <token>` (compared in constant time)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(errors="replace"), token.encode()
    )


COOKIE = "jobtrail_session"
SESSION_SECONDS = 12 * 3600


class Sessions:
    """The console's sessions: signed cookies any replica can check, and CSRF tokens.

    A session is `expires.nonce.mac`, the MAC an HMAC-SHA256 over `expires.nonce` with a
    key derived from `JOBTRAIL_API_TOKEN` (so every replica with the same token accepts
    it, and changing the token ends every session). Without a token the key is random
    per process (the console is open then, as the API is; sessions exist only to bind
    CSRF tokens). The CSRF token of a session is another HMAC of its nonce. Logging out
    forgets the nonce in this process; the cookie is cleared in the browser, and another
    replica would accept the old cookie until it expires (at most SESSION_SECONDS).
    """

    def __init__(self, api_token: str | None, *, clock: Callable[[], float] = time.time) -> None:
        self.key = (
            hmac.new(api_token.encode(), b"jobtrail console session v1", hashlib.sha256).digest()
            if api_token
            else secrets.token_bytes(32)
        )
        self._clock = clock
        self._ended: dict[str, int] = {}  # nonce -> expiry, for logged-out sessions

    def issue(self) -> str:
        expires = int(self._clock()) + SESSION_SECONDS
        nonce = secrets.token_urlsafe(18)
        return f"{expires}.{nonce}.{self._mac(f'{expires}.{nonce}')}"

    def nonce(self, cookie: str | None) -> str | None:
        """The session's nonce if `cookie` is one this key signed, unexpired, not ended."""
        if not cookie or len(cookie) > 200:
            return None
        expires, _, rest = cookie.partition(".")
        nonce, _, mac = rest.partition(".")
        if not expires.isascii() or not expires.isdigit() or not nonce or not mac:
            return None
        if not hmac.compare_digest(mac.encode(errors="replace"), self._mac(f"{expires}.{nonce}").encode()):
            return None
        if int(expires) <= self._clock() or nonce in self._ended:
            return None
        return nonce

    def csrf(self, nonce: str) -> str:
        return self._mac(f"csrf.{nonce}")

    def csrf_matches(self, nonce: str, token: str) -> bool:
        return hmac.compare_digest(token.encode(errors="replace"), self.csrf(nonce).encode())

    def end(self, cookie: str) -> None:
        nonce = self.nonce(cookie)
        if nonce is not None:
            now = self._clock()
            self._ended = {n: e for n, e in self._ended.items() if e > now}  # forget the expired
            self._ended[nonce] = int(cookie.partition(".")[0])

    def _mac(self, text: str) -> str:
        digest = hmac.new(self.key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
