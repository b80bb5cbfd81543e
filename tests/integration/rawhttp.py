"""The receiver as `jobtrail serve` runs it (its own connection class, a real socket), and
requests written byte by byte: what no HTTP client library will send (a byte that is not
UTF-8 in a header, Content-Length beside chunked, a half-close) is what these tests need."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from jobtrail.core.settings import Settings
from jobtrail.receiver.app import create_app
from jobtrail.receiver.keys import METRICS
from jobtrail.receiver.protocol import Runner
from jobtrail.receiver.serve import store_for
from jobtrail.store.base import Store


@dataclass
class Served:
    app: web.Application
    store: Store
    port: int
    runner: Runner


@asynccontextmanager
async def serving(settings: Settings, *, background: bool = False) -> AsyncIterator[Served]:
    store = store_for(settings)
    await store.open()
    app = create_app(settings, store, background=background)
    runner = Runner(app, app[METRICS].refused_http, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield Served(app, store, port, runner)
    finally:
        if runner.server is not None:  # a test may have stopped it already
            await runner.cleanup()
        await store.close()


@dataclass
class Reply:
    status: int | None  # None: the connection closed without an answer
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def exchange(port: int, raw: bytes, *, half_close: bool = False, guard: float = 20.0) -> Reply:
    """Send `raw`, optionally half-close, and read one answer (by its Content-Length, or to
    the end). `guard` only keeps a broken server from hanging the test."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        if half_close:
            writer.write_eof()
        async with asyncio.timeout(guard):
            return await read_reply(reader)
    finally:
        writer.close()


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return Reply(None, {}, b"")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return Reply(status, headers, body)


def request(
    method: str,
    target: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    raw_headers: bytes = b"",
) -> bytes:
    """An HTTP/1.1 request as bytes; `raw_headers` are added as they are (any byte)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: jobtrail.test"]
    all_headers = {"Content-Length": str(len(body)), **(headers or {})}
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n").encode() + raw_headers + b"\r\n" + body
