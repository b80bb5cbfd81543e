"""Typed keys for what the application holds."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from core.settings import Settings
from receiver.bodies import HeaderScrubber
from receiver.metrics import Metrics
from runtime.health import Health
from store.base import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
SCRUB = web.AppKey("scrub_headers", HeaderScrubber)
HEALTH = web.AppKey("health", Health)
CLIENT = web.AppKey("client", aiohttp.ClientSession)
