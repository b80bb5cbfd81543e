"""The download SSRF guard: result URLs come from providers' payloads, so they are
untrusted; they must not make jobtrail fetch from inside its own network.

- Only `https`; `http` only for hosts listed in `JOBTRAIL_DOWNLOAD_ALLOW_HOSTS`.
- A host is refused when any address it resolves to is loopback, private, link-local,
  shared (CGNAT), multicast, reserved, unspecified or a cloud metadata address, unless the
  host is allow-listed. The check runs inside the connector's resolver, on the very
  addresses the connection will use (no gap for DNS rebinding between check and connect),
  and again for every redirect, whose URL is re-checked too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)


class Refused(Exception):
    """The URL or an address it resolves to is not allowed."""


def forbidden(address: str) -> str | None:
    """Why an address may not be fetched from, or None. Pure."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA:
        return f"{ip} is a cloud metadata address"
    for test, what in (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_private, "private"),
        (ip.is_multicast, "multicast"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not public"),
    ):
        if test:
            return f"{ip} is {what}"
    return None


def check_url(url: str, allow_hosts: Collection[str]) -> str:
    """The URL's host, if the URL may be fetched; else `Refused`. Pure."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError as exc:
        raise Refused(f"not a URL: {exc}") from exc
    if not host:
        raise Refused("the URL has no host")
    allowed = host in allow_hosts
    if parts.scheme != "https" and not (parts.scheme == "http" and allowed):
        raise Refused(f"only https URLs are fetched ({parts.scheme}://{host} is not allow-listed)")
    if parts.username or parts.password:
        raise Refused("URLs with credentials are not fetched")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    reason = None if allowed else forbidden(host.strip("[]"))
    if reason:
        raise Refused(f"{host}: {reason}")
    return host


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses forbidden addresses."""

    def __init__(self, allow_hosts: Collection[str], inner: AbstractResolver | None = None) -> None:
        self.allow_hosts = frozenset(h.lower() for h in allow_hosts)
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        if host.lower() in self.allow_hosts:
            return found
        for entry in found:
            reason = forbidden(entry["host"])
            if reason:
                raise Refused(f"{host} resolves to {reason}")
        return found

    async def close(self) -> None:
        await self.inner.close()
