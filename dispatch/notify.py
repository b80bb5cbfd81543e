"""Sending one notification: Slack, a signed webhook, or an email. One attempt each.

Every HTTP sink shares the rules: 2xx is delivered; 410 Gone disables the sink (Svix
does the same) and the item is dead-lettered; 429 and 503 honour `Retry-After`; anything
else, a timeout or a refused connection is a failed attempt, retried on the schedule.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
import aiosmtplib

from jobtrail.core.model import OutboxEntry, utcnow
from jobtrail.core.retry import retry_after_seconds
from jobtrail.core.settings import NotifySettings
from jobtrail.dispatch import messages, signing
from jobtrail.dispatch.schedule import Outcome
from jobtrail.store.base import Store


class Notifier:
    def __init__(
        self, store: Store, notify: NotifySettings, session: aiohttp.ClientSession, timeout: float
    ) -> None:
        self.store, self.notify, self.session = store, notify, session
        self.timeout = timeout
        self.secrets = notify.webhook_secrets
        self.keys = [signing.private_key(k) for k in notify.webhook_signing_keys]

    async def send(self, entry: OutboxEntry) -> Outcome:
        item = entry.item
        job, outbox = await asyncio.gather(  # two reader connections at once
            self.store.get_job(item.provider, item.job_id),
            self.store.outbox_for_job(item.provider, item.job_id),
        )
        if job is None:
            return Outcome(False, error="the job is not in the store", permanent=True)
        notice = messages.notice(job, str(item.payload.get("status", job.status.value)), outbox)
        if item.sink == "slack" and self.notify.slack_webhook_url:
            return await self._post(self.notify.slack_webhook_url, messages.slack(notice), {})
        if item.sink == "webhook" and self.notify.webhook_url:
            body = messages.webhook(notice, utcnow())
            msg_id = signing.webhook_id(item.key)
            headers = signing.headers(msg_id, int(time.time()), body, self.secrets, self.keys)
            return await self._post(
                self.notify.webhook_url, body, {**headers, "Content-Type": "application/json"}
            )
        if item.sink == "email" and self.notify.smtp_url:
            return await self._email(notice, signing.webhook_id(item.key))
        return Outcome(False, error=f"the sink {item.sink!r} is not configured", permanent=True)

    async def _post(self, url: str, body: object, headers: Mapping[str, str]) -> Outcome:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
        try:
            async with self.session.post(
                url, headers=dict(headers), timeout=timeout, allow_redirects=False, **kwargs
            ) as r:
                said = (await r.content.read(300)).decode("utf-8", "replace").strip()
        except TimeoutError:
            return Outcome(False, error=f"timed out after {self.timeout:g} s")
        except aiohttp.ClientError as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}")
        if 200 <= r.status < 300:
            return Outcome(True, http_status=r.status)
        error = f"HTTP {r.status}" + (f": {said}" if said else "")
        if r.status == 410:
            return Outcome(False, http_status=410, error=error, disable_sink=True)
        retry_after = (
            retry_after_seconds(r.headers.get("Retry-After"), utcnow()) if r.status in (429, 503) else None
        )
        return Outcome(False, http_status=r.status, error=error, retry_after=retry_after)

    async def _email(self, notice: messages.Notice, msg_id: str) -> Outcome:
        smtp = smtp_options(self.notify.smtp_url or "")
        message = messages.email(notice, self.notify.email_from or "jobtrail@localhost", self.notify.email_to)
        message["Message-ID"] = f"<{msg_id}@jobtrail>"  # the same for every retry: receivers can deduplicate
        try:
            await aiosmtplib.send(message, timeout=self.timeout, **smtp)  # type: ignore[arg-type]
        except aiosmtplib.SMTPResponseException as exc:
            return Outcome(False, error=f"SMTP {exc.code}: {exc.message}")
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}")
        return Outcome(True)


def smtp_options(url: str) -> dict[str, object]:
    """aiosmtplib options from `smtp://` (STARTTLS when offered; `?starttls=require` or
    `never`) or `smtps://` (TLS from the start), with `user:pass@` for AUTH and
    `?ca_file=PATH` for a private certificate authority."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    tls = parts.scheme == "smtps"
    starttls = {"require": True, "never": False}.get(query.get("starttls", ""))
    options: dict[str, object] = {
        "hostname": parts.hostname,
        "port": parts.port or (465 if tls else 587 if parts.username else 25),
        "use_tls": tls,
        "start_tls": False if tls else starttls,
    }
    if parts.username:
        options["username"] = unquote(parts.username)
        options["password"] = unquote(parts.password or "")
    if "ca_file" in query:
        options["cert_bundle"] = query["ca_file"]
    return options
