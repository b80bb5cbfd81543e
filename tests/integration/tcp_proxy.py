"""A TCP proxy on loopback for fault injection between jobtrail and a real server.

`down()` closes every connection and refuses new ones (a server stopped or restarting),
`up()` takes them again. `stall()` keeps every connection open and passes nothing (a
hung server, a network that drops packets) until `up()`. `drop_at_commit()` arms one
fault: the next client message that commits (holding `COMMIT`, or jobtrail's write,
which is a transaction of its own when sent alone) is passed on, and the connection is
closed before the server's answer comes back (a transaction committed whose client never
heard it).
"""

from __future__ import annotations

import asyncio
import contextlib


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._refusing = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._drop_at_commit = False
        self.dropped_at_commit = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.down()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def down(self) -> None:
        self._refusing = True
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    def up(self) -> None:
        self._refusing = False
        self._flowing.set()

    def stall(self) -> None:
        self._flowing.clear()

    def drop_at_commit(self) -> None:
        self._drop_at_commit = True

    async def _link(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._links |= {client_writer, server_writer}
        committed = asyncio.Event()

        async def upstream() -> None:
            while data := await client_reader.read(65536):
                await self._flowing.wait()
                server_writer.write(data)
                await server_writer.drain()
                if self._drop_at_commit and (b"COMMIT" in data or b"jobtrail_write(" in data):
                    self._drop_at_commit = False
                    committed.set()

        async def downstream() -> None:
            while data := await server_reader.read(65536):
                await self._flowing.wait()
                if committed.is_set():  # the answer to COMMIT: never delivered
                    self.dropped_at_commit += 1
                    return
                client_writer.write(data)
                await client_writer.drain()

        pumps = {asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())}
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)  # a reset is how links end here
            for writer in (client_writer, server_writer):
                self._links.discard(writer)
                with contextlib.suppress(Exception):
                    writer.transport.abort()
