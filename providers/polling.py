"""How each provider is polled: its status request and how to read the answer.

The poller in `listeners/` is the same for every provider; what differs lives here.
Venice is the odd one: its status answer may be the result file itself
(`streams_result`; once on disk, `streamed` makes the observation), and once that file
is safe it must be told to delete it (`cleanup_call`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobtrail.core.model import Job, Observation
from jobtrail.core.settings import ProviderSettings
from jobtrail.providers import apiframe, oxen, pixazo, replies, venice
from jobtrail.providers.replies import HttpCall, Reply

Reader = Callable[[Job, int, Mapping[str, str], bytes, datetime], Reply]


def _never(content_type: str) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class PollSpec:
    status_call: Callable[[ProviderSettings, Job], HttpCall]
    read: Reader
    streams_result: Callable[[str], bool] = _never
    streamed: Callable[[Job, Mapping[str, Any]], Observation] | None = None
    cleanup_call: Callable[[ProviderSettings, Job], HttpCall] | None = None


def _generic(parse: Callable[[Any], Observation]) -> Reader:
    def read(job: Job, status: int, headers: Mapping[str, str], body: bytes, now: datetime) -> Reply:
        return replies.read_reply(status, headers, body, parse, now)

    return read


SPECS: Mapping[str, PollSpec] = {
    pixazo.NAME: PollSpec(pixazo.status_call, _generic(pixazo.parse_status)),
    apiframe.NAME: PollSpec(apiframe.status_call, _generic(apiframe.parse)),
    oxen.NAME: PollSpec(oxen.status_call, _generic(oxen.parse_status)),
    venice.NAME: PollSpec(
        venice.retrieve_call,
        venice.read_retrieve,
        streams_result=venice.is_video,
        streamed=venice.finished,
        cleanup_call=venice.complete_call,
    ),
}
