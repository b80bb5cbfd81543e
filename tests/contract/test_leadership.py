"""The leadership lease (Store.lead/resign) on every backend: one holder at a time,
renewed by its holder, taken over only once it expired or was given up. SQLite and the
memory backend serve one process, so they always grant it."""

from __future__ import annotations

import asyncio

from tests.conftest import Backend


async def test_one_holder_at_a_time_and_a_takeover_only_after_expiry_or_resignation(backend: Backend) -> None:
    a, b = await backend.open(), await backend.open()
    assert await a.lead("listeners", "a", 1.0)
    if backend.name != "postgres":  # one server per store: the lease is always granted
        assert await b.lead("listeners", "b", 1.0)
        return
    assert await a.lead("listeners", "a", 1.0), "its holder renews it"
    assert not await b.lead("listeners", "b", 1.0)
    await asyncio.sleep(1.2)  # a stopped renewing: the lease ran out
    assert await b.lead("listeners", "b", 1.0)
    assert not await a.lead("listeners", "a", 1.0), "the old holder does not get it back"
    await b.resign("listeners", "b")
    assert await a.lead("listeners", "a", 30.0), "given up: taken at once"
    await b.resign("listeners", "b")  # not b's any more: nothing happens
    assert not await b.lead("listeners", "b", 30.0)
