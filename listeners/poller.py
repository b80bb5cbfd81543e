"""The poller: every non-terminal job of one provider, polled on a schedule.

Polls are the source of truth: push channels lose things, Venice has none. Each answer
that says something new enters through the same intake transaction as a webhook (source
`poll`); one that repeats what the job was already told is counted, not kept (a poll
every few seconds per open job would otherwise keep a duplicate delivery each time);
every answer is counted on its job, with its time and a digest of its body (written
every POLLS_EVERY s: `Store.record_polls`, shown as `polls` by the job's API). At
most `concurrency` requests are in flight, each until its answer is recorded. The open
jobs are read once, then only the new ones (all again every FULL_RELOAD s). The schedule is pure
(`PollSchedule`); this loop only keeps a heap of due times, launches what is due, and
folds each reply back into the heap:

- an open job: next poll by its age; a terminal one: dropped;
- unknown to the provider (404): recorded as `job.missing`, polled again rarely;
- unavailable (5xx, timeout, unreadable answer): this job backs off;
- throttled (429): the whole provider pauses, at least for `Retry-After`;
- refused (401/403): the whole provider pauses and is reported failed in `/readyz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import random
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import aiohttp
import structlog
from structlog.contextvars import bind_contextvars

from jobtrail.core.machine import fingerprint
from jobtrail.core.model import Delivery, Job, Observation, utcnow
from jobtrail.core.settings import ProviderSettings
from jobtrail.listeners.schedule import PollSchedule
from jobtrail.providers.polling import PollSpec
from jobtrail.providers.replies import Missing, Observed, Refused, Reply, Throttled, Unavailable, Unreadable
from jobtrail.runtime import files, http
from jobtrail.runtime.health import DEGRADED_AFTER, Component, State
from jobtrail.store.base import Polls, Store, StoreError, StoreUnavailable

log = structlog.get_logger(__name__)

TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)
DEFAULT_SCHEDULE = PollSchedule()
FULL_RELOAD = 600.0  # seconds between reads of every open job (in between: only new ones)
POLLS_EVERY = 5.0  # seconds between writes of the jobs' poll counts (`Store.record_polls`)
POLLS_AT_STOP = 2.0  # seconds a stopping poller gives its last write of them
POLLS_CHUNK = 500  # jobs a write of them: each a short statement in the writer's queue
LOAD_PAGE = 2_000  # open jobs read at a time, the event loop free in between


class Poller:
    def __init__(
        self,
        settings: ProviderSettings,
        spec: PollSpec,
        store: Store,
        component: Component,
        session: aiohttp.ClientSession,
        *,
        data_dir: Path,
        schedule: PollSchedule = DEFAULT_SCHEDULE,
        concurrency: int = 4,
        max_result_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.provider = settings.name
        self.settings, self.spec, self.store = settings, spec, store
        self.component, self.session, self.data_dir = component, session, data_dir
        self.schedule, self.concurrency = schedule, concurrency
        self.max_result_bytes = max_result_bytes  # a result that is the answer (Venice)
        self._clock, self._rand = clock, rand
        self._refresh = min(max(schedule.min_interval, 0.05), 5.0)
        self._wake = asyncio.Event()
        self._answers: dict[str, Polls] = {}  # answers since the last write of them, by job
        self._answers_at = 0.0
        self._reset()

    def _reset(self) -> None:
        """Forget every job and poll: `run()` starts from the store each time (a loop that
        died mid-poll left jobs marked due whose polls were cancelled)."""
        self._jobs: dict[str, Job] = {}
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._failures: dict[str, int] = {}
        self._busy: set[str] = set()
        self._requests = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused_until = 0.0
        self._throttles = 0
        self._failing = 0  # polls failed in a row, any job: DEGRADED_AFTER makes it `degraded`
        self._reload_at = 0.0
        self._full_at = 0.0  # when to read every open job again
        self._key = 0  # the store's key of the last open job read

    def poll_all_now(self) -> None:
        """Poll every open job at once (after an SSE reconnect: the stream lost the gap),
        read afresh: jobs that ended meanwhile are not polled."""
        self._due.clear()
        self._reload_at = self._full_at = 0.0
        self._wake.set()

    async def run(self) -> None:
        self._reset()
        self.component.set(State.RUNNING)
        try:
            while True:
                if self._clock() >= self._reload_at:
                    try:
                        await self._reload()
                    except StoreUnavailable as exc:  # the store is down or restarting: wait, go on
                        self._reload_at = self._clock() + self._refresh
                        self.component.set(State.BACKING_OFF, f"the store is unavailable: {exc}")
                    else:
                        if self.component.state is State.BACKING_OFF and self._clock() >= self._paused_until:
                            self.component.set(State.RUNNING)
                if self._clock() >= self._answers_at:
                    await self._write_answers()
                wait = min(self._launch(self._clock()), max(self._answers_at - self._clock(), 0.0))
                self._wake.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
                # that lands as the event fires, and the poller would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLLS_AT_STOP):
                    await self._write_answers()

    def _count(self, job: Job, delivery: Delivery) -> None:
        """One more answer about `job`: counted on the job (`Store.record_polls`) at the
        next write, every POLLS_EVERY s, whether or not the answer itself is kept."""
        before = self._answers.get(job.id)
        digest = hashlib.sha256(delivery.body).hexdigest()[:16]
        answers = 1 + (before.answers if before else 0)
        self._answers[job.id] = Polls(self.provider, job.id, answers, delivery.received_at, digest)

    async def _write_answers(self) -> None:
        """Write the counts gathered; kept for the next write if the store cannot take them."""
        self._answers_at = self._clock() + POLLS_EVERY
        answers, self._answers = self._answers, {}
        records = list(answers.values())
        try:
            while records:  # a chunk at a time: a transaction of 100,000 jobs would hold intake up
                await self.store.record_polls(records[:POLLS_CHUNK])
                for written in records[:POLLS_CHUNK]:
                    del answers[written.job_id]
                records = records[POLLS_CHUNK:]
        except StoreError as exc:
            log.warning("poll_counts_not_recorded", provider=self.provider, jobs=len(answers), error=str(exc))
            for job_id, record in answers.items():  # older first: the newer answers win
                newer = self._answers.get(job_id)
                self._answers[job_id] = (
                    newer._replace(answers=newer.answers + record.answers) if newer else record
                )

    async def _reload(self) -> None:
        """Read the open jobs that came since the last read (every `_refresh` s), or all
        of them (at the start, then every FULL_RELOAD s: the backstop that drops jobs
        finished elsewhere and finds any a concurrent writer numbered out of order).
        Pages of LOAD_PAGE, so a hundred thousand open jobs never hold the loop."""
        full = self._clock() >= self._full_at
        key = 0 if full else self._key
        loaded: dict[str, Job] = {}
        while True:
            jobs, key = await self.store.open_jobs_after(self.provider, key, LOAD_PAGE)
            loaded.update((job.id, job) for job in jobs)
            if len(jobs) < LOAD_PAGE:
                break
            await asyncio.sleep(0)
        now = self._clock()
        self._key = key
        if full:
            self._jobs = loaded
            self._full_at = now + FULL_RELOAD
            self._due = {job_id: at for job_id, at in self._due.items() if job_id in self._jobs}
            self._failures = {job_id: n for job_id, n in self._failures.items() if job_id in self._jobs}
            if len(self._heap) > 4 * len(self._jobs) + 64:
                self._heap = [(at, job_id) for job_id, at in self._due.items()]
                heapq.heapify(self._heap)
        else:
            self._jobs.update(loaded)
        for job_id in loaded if not full else self._jobs:
            if job_id not in self._due:
                self._plan(job_id, now)
        self._reload_at = now + self._refresh

    def _plan(self, job_id: str, at: float) -> None:
        self._due[job_id] = at
        heapq.heappush(self._heap, (at, job_id))

    def _launch(self, now: float) -> float:
        """Start what is due; return how long to sleep (a finished poll wakes us early)."""
        until_reload = max(0.0, self._reload_at - now)
        if now < self._paused_until:
            return min(self._paused_until - now, until_reload)
        while self._heap and self._requests < self.concurrency:
            at, job_id = self._heap[0]
            if at > now:
                break
            heapq.heappop(self._heap)
            if self._due.get(job_id) != at or job_id not in self._jobs or job_id in self._busy:
                continue
            self._busy.add(job_id)
            self._requests += 1
            task = asyncio.create_task(self._poll(self._jobs[job_id]), name=f"poll-{self.provider}")
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        if self._requests >= self.concurrency or not self._heap:
            return until_reload
        return max(0.0, min(self._heap[0][0] - now, until_reload))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _poll(self, job: Job) -> None:
        """Ask, then record. The request slot is held until the answer is recorded: a
        store slower than the provider slows the polls down instead of letting answers
        pile up in memory (commits are still shared: `concurrency` polls record at once)."""
        bind_contextvars(provider=self.provider, job_id=job.id)  # its own task: names the job
        try:
            try:
                reply, delivery = await self._ask(job)
                if delivery is not None:
                    await self._record(job, reply, delivery)
            finally:
                self._requests -= 1
                self._wake.set()
        except (aiohttp.ClientError, TimeoutError, OSError, http.AnswerTooLarge, files.SizeError) as exc:
            reply = Unavailable(None, _describe(exc))
        except StoreError as exc:
            log.warning("poll_not_recorded", provider=self.provider, job_id=job.id, error=str(exc))
            reply = Unavailable(None, f"the store could not record the answer: {exc}")
        except Exception as exc:  # a bug must not stop this job from being polled again
            log.exception("poll_crashed", provider=self.provider, job_id=job.id)
            reply = Unavailable(None, f"internal error: {_describe(exc)}")
        finally:
            self._busy.discard(job.id)
        self._reschedule(job, reply)
        if isinstance(reply, Observed) and reply.observation.file is not None:
            await self._clean_up(job)

    async def _ask(self, job: Job) -> tuple[Reply, Delivery | None]:
        call = self.spec.status_call(self.settings, job)
        async with self.session.request(
            call.method, call.url, headers=dict(call.headers), json=call.json, timeout=TIMEOUT
        ) as response:
            headers = http.kept_headers(response)
            if (
                response.status == 200
                and self.spec.streamed
                and self.spec.streams_result(response.content_type)
            ):
                limit, announced = self.max_result_bytes, response.content_length
                if limit is not None and announced is not None and announced > limit:
                    raise files.SizeError(
                        f"the result ({announced} bytes) is larger than the {limit}-byte limit"
                    )
                saved = await files.save_stream(
                    response.content.iter_any(),
                    files.download_path(self.data_dir, self.provider, job.id, _file_name(job, response)),
                    expected_bytes=announced,
                    max_bytes=limit,
                )
                observation = self.spec.streamed(job, saved.to_json())
                return Observed(observation), self._delivery(job, headers, b"")
            body = http.unechoed(call, await http.read_small(response))
        reply = self.spec.read(job, response.status, headers, body, utcnow())
        if isinstance(reply, Observed) and reply.observation.job_id != job.id:
            reply = Unreadable(f"the answer is about job {reply.observation.job_id!r}, not {job.id!r}")
        return reply, self._delivery(job, headers, body)

    def _delivery(self, job: Job, headers: dict[str, str], body: bytes) -> Delivery:
        return Delivery("poll", self.provider, utcnow(), headers, body, job.id)

    async def _record(self, job: Job, reply: Reply, delivery: Delivery) -> None:
        """Keep what the answer says, if it says something new. An answer that repeats
        what the job has already been told (its fingerprint is in `job.seen`) is counted
        (`unchanged`, in `/readyz`) and not kept: it would be a duplicate delivery, a row
        of headers and body for nothing, every few seconds per open job. The first
        answer of each kind is kept, with the event it made."""
        self._count(job, delivery)
        if isinstance(reply, Unreadable):
            await self.store.reject(delivery, reply.reason)
            return
        if isinstance(reply, Observed):
            observation = reply.observation
        elif isinstance(reply, Missing):
            said = f"HTTP {reply.status}: {reply.words}"
            observation = Observation(self.provider, job.id, "missing", error=said)
        else:
            return
        if observation.file is None and fingerprint(observation) in job.seen:
            self.component.count("unchanged")
            return
        result = await self.store.intake(delivery, [observation])
        if result.job is not None and result.job.id in self._jobs:  # fresher than the last read
            self._jobs[result.job.id] = result.job

    def _reschedule(self, job: Job, reply: Reply) -> None:
        now = self._clock()
        self.component.count(type(reply).__name__.lower())
        if isinstance(reply, Observed | Missing):
            self._failures.pop(job.id, None)
            self._throttles = self._failing = 0
            if self.component.state is not State.RUNNING:
                self.component.set(State.RUNNING)
            self.component.saw_event()
        if isinstance(reply, Observed):
            if reply.observation.status is not None and reply.observation.status.terminal:
                self._jobs.pop(job.id, None)
                self._due.pop(job.id, None)
                return
            age = (utcnow() - job.created_at).total_seconds()
            self._plan(job.id, now + self.schedule.interval(age, self._rand))
        elif isinstance(reply, Missing):
            self._plan(job.id, now + self.schedule.max_interval)
        elif isinstance(reply, Throttled | Refused):
            self._pause(now, reply)
            self._plan(job.id, self._paused_until)
        else:
            failures = self._failures.get(job.id, 0)
            self._failures[job.id] = failures + 1
            server = reply.retry_after if isinstance(reply, Unavailable) else None
            self._plan(job.id, now + self.schedule.backoff.delay(failures, server, self._rand))
            reason = reply.words if isinstance(reply, Unavailable) else reply.reason
            log.warning("poll_failed", provider=self.provider, job_id=job.id, reason=reason)
            self._failing += 1
            if self._failing >= DEGRADED_AFTER and self.component.state is not State.FAILED:
                said = f"the last {self._failing} polls in a row failed: {reason}"
                self.component.set(State.DEGRADED, said)

    def _pause(self, now: float, reply: Throttled | Refused) -> None:
        if isinstance(reply, Refused):
            wait, state = self.schedule.refused_pause, State.FAILED
            reason = f"the provider refused our key: HTTP {reply.status}: {reply.words}"
        else:
            wait = self.schedule.backoff.delay(self._throttles, reply.retry_after, self._rand)
            self._throttles += 1
            state, reason = State.BACKING_OFF, f"throttled (HTTP 429): {reply.words}"
        self._paused_until = max(self._paused_until, now + wait)
        until = utcnow() + timedelta(seconds=self._paused_until - now)
        self.component.set(state, reason, until)
        log.warning("provider_paused", provider=self.provider, reason=reason, seconds=round(wait, 3))

    async def _clean_up(self, job: Job) -> None:
        """Tell the provider the result is safe on disk (Venice deletes it then)."""
        if self.spec.cleanup_call is None:
            return
        call = self.spec.cleanup_call(self.settings, job)
        for attempt in range(3):
            try:
                answer = await http.send(self.session, call, TIMEOUT)
                if answer.status < 300:
                    log.info("provider_cleanup_done", provider=self.provider, job_id=job.id)
                    return
                said = f"HTTP {answer.status}"
            except (aiohttp.ClientError, TimeoutError, http.AnswerTooLarge) as exc:
                said = _describe(exc)
            log.warning("provider_cleanup_failed", provider=self.provider, job_id=job.id, reason=said)
            await asyncio.sleep(self.schedule.backoff.delay(attempt, None, self._rand))


def _file_name(job: Job, response: aiohttp.ClientResponse) -> str:
    subtype = response.content_type.partition("/")[2]
    return f"{job.id}.{subtype if subtype.isalnum() and len(subtype) <= 8 else 'bin'}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
