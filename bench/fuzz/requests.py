"""Hostile HTTP requests as bytes, for hypothesis: every route, with parameters, headers,
framing and bodies chosen to break parsers (ASCII and Unicode digits, numbers of 5,000
digits, times at year 1 and 9999, bytes that are not UTF-8, control characters, JSON
nested 5,000 deep, lying lengths, broken chunks, unknown encodings, half-closes), mixed
with well-formed and correctly authenticated ones so that the routes' deeper code runs.

`shots(keys)` draws one `Shot`; `keys` are the real webhook token, API token and Apiframe
key (a request that gets past authentication reaches the most code)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from urllib.parse import quote

from hypothesis import strategies as st

from jobtrail.providers import apiframe


@dataclass(frozen=True)
class Keys:
    webhook_token: str
    api_token: str
    apiframe_key: str


ID = b"<fuzz-id>"


@dataclass(frozen=True)
class Shot:
    raw: bytes  # the first header is `X-Fuzz-Id: <fuzz-id>`; `numbered` fills it in
    webhook: bool  # a POST to /webhooks/pixazo/{token} or /webhooks/apiframe
    head: bool  # a HEAD: the answer has no body
    half_close: bool  # the client shuts its sending side after the request

    def numbered(self, fuzz_id: int) -> bytes:
        """The request with its id, by which a kept delivery is found again."""
        return self.raw.replace(ID, str(fuzz_id).encode(), 1)


ODD_TEXT = [
    "",
    "0",
    "1",
    "-1",
    "\u00b2",  # a digit to str.isdigit, not to int
    "\uff11",  # fullwidth 1
    "9" * 5000,
    "1e9",
    "0x10",
    " 5",
    "NaN",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "2026-13-45T99:99:99",
    "2026-05-22T13:17:32Z",
    "\x00",
    "\udcff",
    "%ff",
    "a" * 300,
    "pixazo",
    "venice",
    "dead",
    "pending",
    "succeeded",
    "slack",
    "..",
]
PARAMS = ["limit", "after", "cursor", "status", "provider", "since", "until", "sink", "x"]


def _text() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=40))


def _segment() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["pixazo", "apiframe", "oxen", "venice", "job-1", "x"]),
        _text().map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="")),
    )


@st.composite
def _target(draw: st.DrawFn, keys: Keys) -> tuple[str, bool]:
    """(path and query, whether it is a webhook route)."""
    seg = draw(_segment())
    token = draw(st.sampled_from([keys.webhook_token, keys.webhook_token + "x", "", seg]))
    path = draw(
        st.sampled_from(
            [
                f"/webhooks/pixazo/{token}",
                f"/webhooks/pixazo/{keys.webhook_token}",
                f"/webhooks/pixazo/{keys.webhook_token}",
                "/webhooks/apiframe",
                "/webhooks/apiframe",
                "/webhooks/apiframe",
                f"/webhooks/{seg}",
                "/api/jobs",
                f"/api/jobs/{seg}/{draw(_segment())}",
                f"/api/jobs/{seg}/{draw(_segment())}/events",
                "/api/jobs/submit",
                "/api/events",
                "/api/outbox",
                "/api/outbox/replay",
                f"/api/outbox/{seg}/replay",
                "/healthz",
                "/readyz",
                "/metrics",
                f"/{seg}",
                "*",
                "http://other.example/api/jobs",
            ]
        )
    )
    pairs = draw(st.lists(st.tuples(st.sampled_from(PARAMS), _text()), max_size=4))
    query = "&".join(f"{k}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in pairs)
    if draw(st.integers(0, 20)) == 0:  # now and then the raw text, unencoded
        query = "&".join(f"{k}={v}" for k, v in pairs)
    webhook = path.startswith(("/webhooks/pixazo/", "/webhooks/apiframe")) and path.count("/") == (
        3 if path.startswith("/webhooks/pixazo/") else 2
    )
    return (f"{path}?{query}" if query else path), webhook


def _json_value() -> st.SearchStrategy[object]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        _text(),
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text(), inner, max_size=4),
        max_leaves=12,
    )


@st.composite
def _body(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    job = draw(st.one_of(st.sampled_from(["job-1", "job-2", ".."]), _text()))
    status = draw(
        st.one_of(st.sampled_from(["PROCESSING", "COMPLETED", "FAILED", "queued", "CANCELLED"]), _text())
    )
    extra = draw(st.dictionaries(_text(), _json_value(), max_size=3))
    if kind == 0:
        doc: object = {"request_id": job, "status": status, "error": draw(_json_value()), **extra}
    elif kind == 1:
        url = draw(st.sampled_from(["https://cdn.test/v.mp4", "https://[", "http://127.1/x", "ftp://x"]))
        doc = {"jobId": job, "status": status, "result": {"videoUrl": url}, "progress": draw(_json_value())}
    elif kind == 2:
        doc = {"provider": draw(st.sampled_from(["venice", "pixazo", "x"])), "id": job, **extra}
    elif kind == 3:
        doc = {"sink": draw(_json_value()), "since": draw(_json_value()), "limit": draw(_json_value())}
    elif kind == 4:
        doc = {"provider": draw(st.sampled_from(["apiframe", "venice", "oxen"])), "video": draw(_text())}
    elif kind == 5:
        depth = draw(st.integers(1, 5000))
        return ("[" * depth + "]" * depth).encode()
    elif kind == 6:
        return draw(st.binary(max_size=300))
    elif kind == 7:
        return draw(_text()).encode("utf-8", "surrogatepass")
    else:
        doc = draw(_json_value())
    return json.dumps(doc).encode()


CORRUPTIONS = [
    "method",  # not an HTTP method token
    "version",  # HTTP/9.9, or words after the version
    "raw-query",  # the query unencoded: spaces, bytes that are not UTF-8
    "header-bytes",  # control bytes in a header value
    "auth-byte",  # the right API token followed by \x01
    "bad-length",  # Content-Length of -1, letters, 30 digits, a Unicode digit, a list
    "chunked-and-length",  # both: request smuggling's favourite
    "chunked-broken",  # a chunk size that is not hex
    "long-line",  # a request line or a header over 8,190 bytes
    "tls",  # a TLS hello on the plain port
]


@st.composite
def shots(draw: st.DrawFn, keys: Keys) -> Shot:
    """One request: well-formed HTTP with hostile content, or (one time in four) with
    one corruption of the protocol itself."""
    broken = draw(st.sampled_from(CORRUPTIONS)) if draw(st.integers(0, 3)) == 0 else None
    if broken == "tls":
        return Shot(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + draw(st.binary(max_size=64)),
            False,
            False,
            draw(st.booleans()),
        )
    method = draw(
        st.sampled_from(
            ["G\x01T", "", "GET POST", "\xff"]
            if broken == "method"
            else ["GET", "GET", "POST", "POST", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]
        )
    )
    target, webhook = draw(_target(keys))
    if broken == "raw-query":
        target += draw(st.sampled_from(["&x=a b", "&x=\xff", "&x=\x00", "&x=<>"]))
    elif broken == "long-line":
        target += "&pad=" + "a" * 9000
    webhook = webhook and method == "POST"
    body = draw(_body())
    headers: list[tuple[str, bytes]] = [("X-Fuzz-Id", ID)]
    headers.append(
        (
            "Content-Type",
            draw(
                st.sampled_from(
                    [
                        b"application/json",
                        b"application/json",
                        b"text/plain",
                        b"application/x+json",
                        b"",
                        b"application/json; charset=latin-1",
                    ]
                )
            ),
        )
    )
    auth = draw(st.sampled_from(["good", "good", "bad", "none"]))
    if broken == "auth-byte":
        headers.append(("Authorization", f"Bearer {keys.api_token}\x01".encode()))
    elif auth != "none":
        headers.append(
            ("Authorization", (f"Bearer {keys.api_token}" if auth == "good" else "Bearer nope").encode())
        )
    if draw(st.integers(0, 3)):
        signature = apiframe.sign(apiframe.signing_key(keys.apiframe_key), body)
        headers.append(
            (
                "X-Webhook-Signature",
                draw(
                    st.sampled_from([signature, signature, "sha256=" + signature, "0" * 64, "\u00e9"])
                ).encode(),
            )
        )
    if draw(st.integers(0, 4)) == 0:
        headers.append(("Last-Event-ID", quote(draw(_text()).encode("utf-8", "surrogatepass")).encode()))
    encoding = draw(
        st.sampled_from([None, None, None, None, "gzip", "gzip-broken", "deflate", "br", "x-odd"])
    )
    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "gzip-broken":
        body, encoding = b"\x1f\x8b\x08" + body, "gzip"
    if encoding:
        headers.append(("Content-Encoding", encoding.encode()))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(
            st.sampled_from(["X-Note", "X-Forwarded-For", "User-Agent", "Expect", "Connection", "Accept"])
        )
        value = draw(st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=64))
        headers.append((name, value.encode()))  # any printable text; control bytes are a corruption
    if broken == "header-bytes":
        headers.append(("X-Note", b"caf\xe9 \x01\x7f"))
    elif broken == "long-line":
        headers.append(("X-Long", b"b" * 9000))
    if draw(st.integers(0, 30)) == 0:
        headers += [(f"X-Pad-{n}", b"v" * 1024) for n in range(100)]
    framing = draw(st.sampled_from(["length", "length", "length", "none", "short", "long", "chunked"]))
    if broken in ("bad-length", "chunked-and-length", "chunked-broken"):
        framing = broken
    half_close = draw(st.booleans())
    payload = body
    if framing == "length":
        headers.append(("Content-Length", str(len(body)).encode()))
    elif framing == "short":
        headers.append(("Content-Length", str(max(0, len(body) - 3)).encode()))
    elif framing == "long":  # a lying length: the rest never comes, so the client half-closes
        headers.append(("Content-Length", str(len(body) + 100).encode()))
        half_close = True
    elif framing == "bad-length":
        headers.append(
            ("Content-Length", draw(st.sampled_from([b"-1", b"abc", b"9" * 30, b"\xc2\xb2", b"1, 2"])))
        )
    elif framing in ("chunked", "chunked-and-length", "chunked-broken"):
        headers.append(("Transfer-Encoding", b"chunked"))
        if framing == "chunked-and-length":
            headers.append(("Content-Length", str(len(body)).encode()))
        payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        if framing == "chunked-broken":
            payload, half_close = b"zz\r\n" + body, True
    version = (
        draw(st.sampled_from([b"HTTP/9.9", b"HTTP/1.1 extra", b"HTTP/1"]))
        if broken == "version"
        else b"HTTP/1.1"
    )
    start = (
        method.encode("utf-8", "surrogatepass")
        + b" "
        + target.encode("utf-8", "surrogatepass")
        + b" "
        + version
    )
    head = (
        start
        + b"\r\nHost: jobtrail.test\r\n"
        + b"".join(n.encode() + b": " + v + b"\r\n" for n, v in headers)
    )
    return Shot(head + b"\r\n" + payload, webhook, method == "HEAD", half_close)
