"""The four simulators on free loopback ports, in this process."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from aiohttp import web

from jobtrail.simulators.apiframe import Apiframe
from jobtrail.simulators.base import Faults
from jobtrail.simulators.oxen import Oxen
from jobtrail.simulators.pixazo import Pixazo
from jobtrail.simulators.venice import Venice

KEYS = {
    "pixazo": "sim-pixazo-key-0123456789",
    "apiframe": "sim-apiframe-key-0123456789",
    "oxen": "sim-oxen-key-0123456789",
    "venice": "sim-venice-key-0123456789",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Cluster:
    pixazo: Pixazo
    apiframe: Apiframe
    oxen: Oxen
    venice: Venice
    bases: dict[str, str] = field(default_factory=dict)
    runners: list[web.AppRunner] = field(default_factory=list)

    @classmethod
    def build(cls, faults: dict[str, Faults] | None = None, result_size: int = 256 * 1024) -> Cluster:
        f = faults or {}
        return cls(
            Pixazo(KEYS["pixazo"], f.get("pixazo"), result_size),
            Apiframe(KEYS["apiframe"], f.get("apiframe"), result_size),
            Oxen(KEYS["oxen"], f.get("oxen"), result_size, heartbeat=1.0),
            Venice(KEYS["venice"], f.get("venice"), result_size),
        )

    async def start(self, first_port: int | None = None, host: str = "127.0.0.1") -> None:
        """Each on a free port, or on `first_port` and the three after it (in the order
        Pixazo, Apiframe, Oxen, Venice)."""
        sims: list[tuple[str, Pixazo | Apiframe | Oxen | Venice]] = [
            ("pixazo", self.pixazo),
            ("apiframe", self.apiframe),
            ("oxen", self.oxen),
            ("venice", self.venice),
        ]
        for n, (name, sim) in enumerate(sims):
            runner = web.AppRunner(sim.app(), access_log=None)
            await runner.setup()
            self.runners.append(runner)
            port = free_port() if first_port is None else first_port + n
            await web.TCPSite(runner, host, port).start()
            sim.base = self.bases[name] = f"http://{host}:{port}"

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        self.runners.clear()

    def environment(self) -> dict[str, str]:
        """The settings that point jobtrail at these simulators."""
        env = {f"{name.upper()}_API_KEY": key for name, key in KEYS.items()}
        env.update({f"{name.upper()}_BASE_URL": base for name, base in self.bases.items()})
        return env
