"""A running receiver on a loopback socket over a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from jobtrail.core.settings import Settings
from jobtrail.receiver.app import create_app
from jobtrail.receiver.serve import store_for

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> AsyncIterator[Callable[..., Awaitable[TestClient[Any, Any]]]]:
    stores = []

    async def make(**env: str) -> TestClient[Any, Any]:
        settings = make_settings(**env)
        store = store_for(settings)
        await store.open()
        stores.append(store)
        client: TestClient[Any, Any] = await aiohttp_client(create_app(settings, store))
        return client

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, Any]:
    return await make_client()
