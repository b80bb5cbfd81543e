"""A loopback file server for download tests: ranges, cuts, expiry and redirects on purpose."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from aiohttp import web

_RANGE = re.compile(r"bytes=(\d+)-$")


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut_after: dict[str, int] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)
    redirects: dict[str, str] = field(default_factory=dict)
    stall_after: dict[str, int] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/files/{name}", self.ranged)
        app.router.add_get("/norange/{name}", self.whole)
        return app

    def ranges(self, name: str) -> list[str | None]:
        return [r for path, r in self.requests if path.endswith(f"/{name}")]

    async def _common(self, request: web.Request) -> tuple[str, bytes] | web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append((request.path, request.headers.get("Range")))
        if name in self.redirects:
            raise web.HTTPFound(self.redirects[name])
        if name in self.expired:
            return web.Response(status=403, text="Request has expired")
        if name not in self.files:
            return web.Response(status=404)
        return name, self.files[name]

    async def ranged(self, request: web.Request) -> web.StreamResponse:
        found = await self._common(request)
        if isinstance(found, web.StreamResponse):
            return found
        name, data = found
        match = _RANGE.match(request.headers.get("Range", ""))
        start = int(match.group(1)) if match else 0
        if start >= len(data) and match:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        response = web.StreamResponse(status=206 if match else 200)
        response.content_length = len(data) - start
        if match:
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        response.headers["Accept-Ranges"] = "bytes"
        await response.prepare(request)
        return await self._send(request, response, name, data[start:])

    async def whole(self, request: web.Request) -> web.StreamResponse:
        found = await self._common(request)
        if isinstance(found, web.StreamResponse):
            return found
        name, data = found
        response = web.StreamResponse(status=200)
        response.content_length = len(data)
        await response.prepare(request)
        return await self._send(request, response, name, data)

    async def _send(
        self, request: web.Request, response: web.StreamResponse, name: str, data: bytes
    ) -> web.StreamResponse:
        cut = self.cut_after.pop(name, None)
        if cut is not None:
            await response.write(data[:cut])
            await asyncio.sleep(0.3)  # let the client take what it was sent (aiohttp drops
            assert request.transport is not None  # unread bytes when the connection fails)
            request.transport.close()  # the connection dies mid-body
            return response
        stall = self.stall_after.pop(name, None)
        if stall is not None:
            await response.write(data[:stall])
            await asyncio.Event().wait()  # nothing more, ever: the client must time out
        for start in range(0, len(data), 65536):
            await response.write(data[start : start + 65536])
        await response.write_eof()
        return response
