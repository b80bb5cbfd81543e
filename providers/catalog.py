"""What jobtrail knows of each provider besides its wire formats, in one table: its
public host, the headers that carry its key, how its jobs are polled, and the quirks
other rooms must ask about rather than name a provider themselves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jobtrail.providers import apiframe, oxen, pixazo, venice
from jobtrail.providers.polling import SPECS, PollSpec


@dataclass(frozen=True, slots=True)
class Provider:
    """`default_model`: what a job tracked without one is polled with (Venice's retrieve
    needs it). `fresh_urls`: its status document hands out a new result URL when one
    expired. `stream_first`: submit only while its push stream is connected (Oxen's
    stream has no replay: an event sent before the connection is lost)."""

    name: str
    base_url: str
    key_headers: tuple[str, ...]
    poll: PollSpec
    default_model: str | None = None
    fresh_urls: bool = False
    stream_first: bool = False


PROVIDERS: Mapping[str, Provider] = {
    pixazo.NAME: Provider(
        pixazo.NAME, pixazo.BASE_URL, (pixazo.KEY_HEADER,), SPECS[pixazo.NAME], fresh_urls=True
    ),
    apiframe.NAME: Provider(
        apiframe.NAME, apiframe.BASE_URL, (apiframe.KEY_HEADER,), SPECS[apiframe.NAME], fresh_urls=True
    ),
    oxen.NAME: Provider(
        oxen.NAME, oxen.BASE_URL, ("Authorization",), SPECS[oxen.NAME], fresh_urls=True, stream_first=True
    ),
    venice.NAME: Provider(
        venice.NAME,
        venice.BASE_URL,
        ("Authorization",),
        SPECS[venice.NAME],
        default_model=venice.DEFAULT_MODEL,
    ),
}

# Headers that carry some provider's key, lower case: never stored with a delivery.
KEY_HEADERS = frozenset(header.lower() for p in PROVIDERS.values() for header in p.key_headers)
