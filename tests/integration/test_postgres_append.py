"""The append's message (store/postgres/writes.py): a batch's events travel inside the
SQL text, as one JSON literal, because the message that numbers them also commits and
the simple protocol takes no parameters. Whatever the events say, they must arrive as
they were sent and never be read as SQL."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from typing import Any

import asyncpg
import pytest

from jobtrail.core.effects import EffectPlanner
from jobtrail.core.intake import IntakeRequest, plan_batch
from jobtrail.core.model import Delivery, Observation, Status, Verdict, utcnow
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


async def test_a_job_changed_between_its_read_and_the_write_is_planned_again_under_its_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Intakes read their jobs without locks and the write checks, under the jobs' locks,
    that none changed since. Here another replica reports the job succeeded between this
    batch's read and its write: the write is refused, the batch read and planned again
    under the locks, and the late "processing" report does not undo "succeeded"."""
    async with postgres.fresh_database() as url:
        store = PostgresStore(url, EffectPlanner())
        await store.open()
        try:
            await store.intake(delivery("job-1"), [Observation("pixazo", "job-1", "processing", progress=10)])
            planned = []

            def other_replica_succeeds() -> None:
                async def report() -> None:
                    other = PostgresStore(url, EffectPlanner())
                    await other.open()
                    try:
                        await other.intake(delivery("job-1"), [Observation("pixazo", "job-1", "succeeded")])
                    finally:
                        await other.close()

                asyncio.run(report())

            def plan_after_a_race(*args: Any, **kwargs: Any) -> Any:
                if threading.current_thread() is not threading.main_thread():  # the other replica's
                    return plan_batch(*args, **kwargs)
                planned.append(args[1].get(("pixazo", "job-1")))
                if len(planned) == 1:
                    thread = threading.Thread(target=other_replica_succeeds)
                    thread.start()
                    thread.join()
                return plan_batch(*args, **kwargs)

            monkeypatch.setattr(writes, "plan_batch", plan_after_a_race)
            late = await store.intake(
                delivery("job-1"), [Observation("pixazo", "job-1", "processing", progress=30)]
            )
            job = await store.get_job("pixazo", "job-1")
        finally:
            await store.close()
    assert [Status.PROCESSING, Status.SUCCEEDED] == [j.status for j in planned]
    assert 1 == store.plans_changed
    assert job is not None and Status.SUCCEEDED == job.status
    assert late.job is not None and Status.SUCCEEDED == late.job.status


def delivery(job_id: str) -> Delivery:
    return Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job_id)


async def test_a_job_removed_between_its_read_and_the_write_is_not_written_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job this batch found absent gets a tombstone (as if another replica created it
    and retention removed it) before the write takes its lock: the write is refused, and
    planned again the report is kept as rejected; the job is not brought back."""
    async with postgres.fresh_database() as url:
        store = PostgresStore(url, EffectPlanner())
        await store.open()
        calls = 0

        def created_and_removed_meanwhile() -> None:
            async def race() -> None:
                conn = await asyncpg.connect(url)
                try:
                    await conn.execute(
                        "INSERT INTO removed_jobs (provider, job_id, removed_at) "
                        "VALUES ('pixazo', 'job-9', now())"
                    )
                finally:
                    await conn.close()

            asyncio.run(race())

        def plan_after_a_race(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                thread = threading.Thread(target=created_and_removed_meanwhile)
                thread.start()
                thread.join()
            return plan_batch(*args, **kwargs)

        monkeypatch.setattr(writes, "plan_batch", plan_after_a_race)
        try:
            answer = await store.intake(
                delivery("job-9"), [Observation("pixazo", "job-9", "processing", progress=5)]
            )
            job = await store.get_job("pixazo", "job-9")
        finally:
            await store.close()
    assert 1 == store.plans_changed
    assert job is None
    assert Verdict.REJECTED == answer.verdict


async def test_a_batch_of_binary_bodies_at_the_stored_maximum_keeps_every_byte() -> None:
    """Bodies travel in the write's message as base64 inside JSON: 120 deliveries at once,
    each 64 KiB of bytes that are not text (and one longer, cut to the maximum), come back
    byte for byte, each with its own id and job."""
    rand = random.Random(7)
    bodies = [rand.randbytes(64 * 1024) for _ in range(119)] + [rand.randbytes(100 * 1024)]
    async with postgres.fresh_database() as url:
        store = PostgresStore(url, EffectPlanner())
        await store.open()
        try:
            requests = [
                IntakeRequest(
                    Delivery("webhook", "pixazo", utcnow(), {"x-n": str(n)}, body, f"job-{n}"),
                    (Observation("pixazo", f"job-{n}", "processing", progress=1),),
                )
                for n, body in enumerate(bodies)
            ]
            answers = await store.intake_many(requests)
            kept = [await store.delivery(answer.delivery_id) for answer in answers]
        finally:
            await store.close()
    assert len({a.delivery_id for a in answers}) == len(bodies)
    for n, (body, stored) in enumerate(zip(bodies, kept, strict=True)):
        assert stored is not None and f"job-{n}" == stored.delivery.job_id
        assert body[: 64 * 1024] == bytes(stored.delivery.body)
        assert len(body) == stored.body_size
        assert {"x-n": str(n)} == dict(stored.delivery.headers)
