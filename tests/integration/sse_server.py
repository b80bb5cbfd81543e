"""A loopback HTTP server that misbehaves on purpose, for the SSE listener's tests.

Each accepted connection runs the next script (the last one repeats). A script writes
raw bytes, so it can split lines anywhere, stall, end cleanly or reset the connection.
The server records every request's headers and notices when a client goes away.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


@dataclass
class Conn:
    writer: asyncio.StreamWriter
    reader: asyncio.StreamReader

    async def send(self, data: bytes) -> None:
        """One HTTP chunk, flushed."""
        if data:
            self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self.writer.drain()

    async def end(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()
        self.writer.close()

    def reset(self) -> None:
        """Close with an RST, as a crashed peer or a middlebox would."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def wait_closed_by_client(self) -> None:
        await self.reader.read()


Script = Callable[[Conn], Awaitable[None]]


def stream(*chunks: bytes, pause: float = 0.0, then: str = "end") -> Script:
    """A 200 event stream sending `chunks`; then `end` (clean), `reset`, or `hang`."""

    async def script(conn: Conn) -> None:
        conn.writer.write(STREAM_HEAD)
        for chunk in chunks:
            await conn.send(chunk)
            if pause:
                await asyncio.sleep(pause)
        if then == "end":
            await conn.end()
        elif then == "reset":
            conn.reset()
        else:
            await conn.wait_closed_by_client()

    return script


def answer(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Script:
    async def script(conn: Conn) -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        conn.writer.write(head.encode() + b"\r\n" + body)
        await conn.writer.drain()
        conn.writer.close()

    return script


@dataclass
class ScriptedServer:
    scripts: Sequence[Script]
    requests: list[dict[str, str]] = field(default_factory=list)
    open_connections: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/api/events"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            self.requests.append({k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)})
            script = self.scripts[min(len(self.requests) - 1, len(self.scripts) - 1)]
            await script(Conn(writer, reader))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()
