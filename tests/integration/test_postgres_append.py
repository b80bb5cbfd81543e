"""The append's message (store/postgres/writes.py): a batch's events travel inside the
SQL text, as one JSON literal, because the message that numbers them also commits and
the simple protocol takes no parameters. Whatever the events say, they must arrive as
they were sent and never be read as SQL."""

from __future__ import annotations

import itertools

import asyncpg
import pytest

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.model import Delivery, Observation, utcnow
from jobtrail.store.postgres import PostgresStore, writes
from tests import postgres

HOSTILE = [
    "",
    "plain",
    'it\'s \\ "quoted" $$ $1 $j$ $tag$',
    "$$; DROP TABLE events; --",
    "'); DELETE FROM jobs; --",
    "caf\u00e9 \u2603 \U0001f600 \ufffd \t\n\r",
]


@pytest.mark.parametrize("text", HOSTILE)
async def test_a_literal_reads_back_as_the_text_it_was_made_of(text: str) -> None:
    async with postgres.fresh_database() as url:
        conn = await asyncpg.connect(url)
        try:
            assert text == await conn.fetchval(f"SELECT {writes.literal(text)}::text")
        finally:
            await conn.close()


def test_a_literals_tag_is_never_one_its_text_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    tags = itertools.chain(["0123456789abcdef", "0123456789abcdef", "fedcba9876543210"])
    monkeypatch.setattr(writes.secrets, "token_hex", lambda n: next(tags))
    text = "before $j0123456789abcdef$ after"
    quoted = writes.literal(text)
    assert quoted == f"$jfedcba9876543210${text}$jfedcba9876543210$"


async def test_hostile_words_in_events_are_stored_as_they_came_and_nothing_else_runs() -> None:
    async with postgres.fresh_database() as url:
        store = PostgresStore(url, EffectPlanner())
        await store.open()
        try:
            for n, words in enumerate(HOSTILE):
                job = f"job-{n}-{words[:12]}"
                delivery = Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job)
                await store.intake(delivery, [Observation("pixazo", job, "failed", error=words)])
            for n, words in enumerate(HOSTILE):
                job = f"job-{n}-{words[:12]}"
                [event] = await store.job_events("pixazo", job)
                assert words == event.data["error"]
            assert len(HOSTILE) == len(await store.events_after(0, 100))
            assert len(HOSTILE) == len((await store.list_jobs(limit=100)).jobs)
        finally:
            await store.close()
