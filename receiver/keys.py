"""Typed keys for what the application holds."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from jobtrail.core.logs import Redactor
from jobtrail.core.settings import Settings
from jobtrail.receiver.auth import Sessions
from jobtrail.receiver.bodies import HeaderScrubber
from jobtrail.receiver.metrics import Metrics
from jobtrail.receiver.tail import Tail
from jobtrail.runtime.health import Health
from jobtrail.runtime.leader import Leadership
from jobtrail.store.base import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
SCRUB = web.AppKey("scrub_headers", HeaderScrubber)
HEALTH = web.AppKey("health", Health)
CLIENT = web.AppKey("client", aiohttp.ClientSession)
LEADERSHIP = web.AppKey("leadership", Leadership)
REDACT = web.AppKey("redact", Redactor)
TAIL = web.AppKey("tail", Tail)
SESSIONS = web.AppKey("sessions", Sessions)
