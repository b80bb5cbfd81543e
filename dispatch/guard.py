"""The download SSRF guard: result URLs come from providers' payloads, so they are
untrusted; they must not make jobtrail fetch from inside its own network.

- Only `https`; `http` only for hosts listed in `JOBTRAIL_DOWNLOAD_ALLOW_HOSTS`.
- Only what is public is fetched from: an address must be global (`ipaddress`'s
  `is_global`) and neither a cloud metadata address nor IPv6 site-local; an IPv6 address
  that carries an IPv4 one (mapped, compatible, 6to4, Teredo, NAT64) is judged by that
  too, since a gateway would deliver there. Unless the host is allow-listed. The check
  runs inside the connector's resolver, on the very addresses the connection will use (no
  gap for DNS rebinding between check and connect), and again for every redirect, whose
  URL is re-checked too.
- A host spelled as an IPv4 address other than four decimal numbers (`2130706433`,
  `127.1`, `0177.0.0.1`, `0x7f.0.0.1`: each means 127.0.0.1 to some resolver) is refused
  outright, as is a URL that does not parse: a permanent refusal, never a retry.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Collection
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)


class Refused(Exception):
    """The URL or an address it resolves to is not allowed."""


NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


def carried(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, which a gateway or relay reaches. Pure."""
    found = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    if ip.teredo is not None:
        found += ip.teredo  # (server, client)
    if any(ip in net for net in NAT64) or (int(ip) >> 32 == 0 and int(ip) > 1):  # NAT64; ::a.b.c.d
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def forbidden(address: str) -> str | None:
    """Why an address may not be fetched from, or None. Pure."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    judged: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        judged += carried(ip)
    for one in judged:
        what = _not_public(one)
        if what:
            return f"{ip} is {what}" if one is ip else f"{ip} carries {one}, which is {what}"
    return None


def _not_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if ip in METADATA:
        return "a cloud metadata address"
    for test, what in (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_private, "private"),
        (ip.is_multicast, "multicast"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_reserved, "reserved"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "site-local"),
        (not ip.is_global, "not public"),
    ):
        if test:
            return what
    return None


def check_url(url: str, allow_hosts: Collection[str]) -> str:
    """The URL's host, if the URL may be fetched; else `Refused`. Pure."""
    try:
        parts = urlsplit(url)
        host = unicodedata.normalize("NFKC", parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise Refused(f"not a URL: {exc}") from exc
    if not host:
        raise Refused("the URL has no host")
    bare = host.rstrip(".")
    if ":" not in bare and _NUMERIC_LABEL.fullmatch(bare.rsplit(".", 1)[-1]):
        try:
            ipaddress.IPv4Address(bare)
        except ValueError:
            raise Refused(
                f"{host} is an IPv4 address spelled unusually; write it as four decimal numbers"
            ) from None
        host = bare
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
