"""Configuration: a TOML file, overridden by the environment. Every value is checked here.

A bad value raises `ConfigError` naming the setting (the CLI exits 2 with it). Secrets
normally come from the environment; they are collected in `Settings.secrets()` so the
log redactor can remove them wherever they appear.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jobtrail.core import values
from jobtrail.core.model import PROVIDERS
from jobtrail.core.values import ConfigError as ConfigError

MAX_BODY_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """A provider's key and endpoint. `base_url` None: the provider's public host (each
    provider's module knows its own)."""

    name: str
    api_key: str | None
    base_url: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.api_key)


TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES = ("queued", "processing", *TERMINAL)


@dataclass(frozen=True, slots=True)
class Rule:
    """Which sinks hear which status changes, optionally only for some providers."""

    sinks: tuple[str, ...]
    statuses: tuple[str, ...] = TERMINAL
    providers: tuple[str, ...] = ()

    def matches(self, provider: str, status: str) -> bool:
        return status in self.statuses and (not self.providers or provider in self.providers)


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """The sinks, and the rules saying who hears what (default: every configured sink hears
    every terminal status). `webhook_secrets` are `whsec_` secrets (several while rotating);
    `webhook_signing_keys` are Ed25519 `whsk_` keys for `v1a` signatures."""

    slack_webhook_url: str | None = None
    webhook_url: str | None = None
    webhook_secrets: tuple[str, ...] = ()
    webhook_signing_keys: tuple[str, ...] = ()
    smtp_url: str | None = None
    email_from: str | None = None
    email_to: tuple[str, ...] = ()
    rules: tuple[Rule, ...] | None = None
    wait_for_downloads: bool = True

    @property
    def webhook_secret(self) -> str | None:
        return self.webhook_secrets[0] if self.webhook_secrets else None

    def sinks(self) -> tuple[str, ...]:
        found = []
        if self.slack_webhook_url:
            found.append("slack")
        if self.webhook_url:
            found.append("webhook")
        if self.smtp_url and self.email_to:
            found.append("email")
        return tuple(found)

    def effective_rules(self) -> tuple[Rule, ...]:
        if self.rules is not None:
            return self.rules
        return (Rule(self.sinks()),) if self.sinks() else ()


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """The outbox worker. Times in seconds; `retry_delays` are the waits after each failed
    attempt (the first attempt is immediate)."""

    retry_delays: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    download_max_bytes: int = 20 * 1024**3
    download_timeout: float = 3600.0
    download_read_timeout: float = 60.0
    download_concurrency: int = 4
    notify_timeout: float = 15.0
    notify_concurrency: int = 16
    lease_seconds: float = 60.0  # an outbox item's lease, renewed while its attempt runs


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    """The SSE listener and the pollers. Times in seconds.

    A job is polled every `poll_age_factor` x its age, never more often than
    `poll_min_interval` nor less often than `poll_max_interval`; at most
    `poll_concurrency` status requests per provider are in flight.
    """

    sse_read_timeout: float = 60.0
    poll_min_interval: float = 5.0
    poll_max_interval: float = 300.0
    poll_age_factor: float = 0.1
    poll_concurrency: int = 4
    leader_ttl: float = 15.0  # the listeners' leadership lease between replicas


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """How long raw records are kept, in days (0: for ever). Past `deliveries_days` a
    delivery (the raw request behind a report, or a duplicate) goes, past
    `rejected_days` a refused one, past `notifications_days` a notification delivered that
    long ago (each attempt stays in the log as a dispatch event; downloads, and pending
    and dead notifications, stay).
    Events and jobs are kept (the audit trail) unless `jobs_days` is set: then a
    finished job last changed longer ago goes whole, leaving a tombstone (export it
    first: `jobtrail export --until`). The leader prunes every `interval` seconds."""

    deliveries_days: int = 30
    rejected_days: int = 30
    notifications_days: int = 30
    jobs_days: int = 0
    interval: float = 300.0

    @property
    def active(self) -> bool:
        return bool(self.deliveries_days or self.rejected_days or self.notifications_days or self.jobs_days)


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("./jobtrail-data")
    store_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    api_token: str | None = None
    webhook_token: str | None = None
    metrics_token: str | None = None  # if set, /metrics needs it as a bearer token
    max_body_bytes: int = 1024 * 1024
    refused_bytes_per_minute: int = 1024 * 1024  # refused unauthenticated webhooks kept, per source
    download_allow_hosts: tuple[str, ...] = ()
    log_format: str = "auto"
    log_level: str = "info"
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    notify: NotifySettings = NotifySettings()
    listeners: ListenerSettings = ListenerSettings()
    dispatch: DispatchSettings = DispatchSettings()
    retention: RetentionSettings = RetentionSettings()

    def provider(self, name: str) -> ProviderSettings:
        return self.providers.get(name) or ProviderSettings(name, None)

    def secrets(self) -> tuple[str, ...]:
        """Every configured secret value, for redaction."""
        values = [self.api_token, self.webhook_token, self.metrics_token, *self.notify.webhook_secrets]
        values += list(self.notify.webhook_signing_keys)
        values += [p.api_key for p in self.providers.values()]
        if self.notify.smtp_url:
            password = urlsplit(self.notify.smtp_url).password
            values.append(password)
        values.append(urlsplit(self.store_url).password)  # postgresql://user:PASSWORD@host/db
        if self.notify.slack_webhook_url:
            values.append(urlsplit(self.notify.slack_webhook_url).path)
        return tuple(v for v in values if v and len(v) >= 4)


# Each simple setting: (TOML key path, environment variable).
_SIMPLE = {
    "data_dir": (("data_dir",), "JOBTRAIL_DATA_DIR"),
    "store_url": (("store_url",), "JOBTRAIL_STORE_URL"),
    "host": (("host",), "JOBTRAIL_HOST"),
    "port": (("port",), "JOBTRAIL_PORT"),
    "public_url": (("public_url",), "JOBTRAIL_PUBLIC_URL"),
    "api_token": (("api_token",), "JOBTRAIL_API_TOKEN"),
    "webhook_token": (("webhook_token",), "JOBTRAIL_WEBHOOK_TOKEN"),
    "metrics_token": (("metrics_token",), "JOBTRAIL_METRICS_TOKEN"),
    "max_body_bytes": (("max_body_bytes",), "JOBTRAIL_MAX_BODY_BYTES"),
    "refused_bytes_per_minute": (("refused_bytes_per_minute",), "JOBTRAIL_REFUSED_BYTES_PER_MINUTE"),
    "download_allow_hosts": (("download_allow_hosts",), "JOBTRAIL_DOWNLOAD_ALLOW_HOSTS"),
    "log_format": (("log_format",), "JOBTRAIL_LOG_FORMAT"),
    "log_level": (("log_level",), "JOBTRAIL_LOG_LEVEL"),
    "slack_webhook_url": (("notify", "slack_webhook_url"), "JOBTRAIL_SLACK_WEBHOOK_URL"),
    "webhook_url": (("notify", "webhook_url"), "JOBTRAIL_NOTIFY_WEBHOOK_URL"),
    "webhook_secret": (("notify", "webhook_secret"), "JOBTRAIL_NOTIFY_WEBHOOK_SECRET"),
    "webhook_signing_key": (("notify", "webhook_signing_key"), "JOBTRAIL_NOTIFY_WEBHOOK_SIGNING_KEY"),
    "wait_for_downloads": (("notify", "wait_for_downloads"), "JOBTRAIL_NOTIFY_WAIT_FOR_DOWNLOADS"),
    "retry_schedule": (("dispatch", "retry_schedule"), "JOBTRAIL_RETRY_SCHEDULE"),
    "download_max_bytes": (("dispatch", "download_max_bytes"), "JOBTRAIL_DOWNLOAD_MAX_BYTES"),
    "download_timeout": (("dispatch", "download_timeout"), "JOBTRAIL_DOWNLOAD_TIMEOUT"),
    "download_concurrency": (("dispatch", "download_concurrency"), "JOBTRAIL_DOWNLOAD_CONCURRENCY"),
    "download_read_timeout": (("dispatch", "download_read_timeout"), "JOBTRAIL_DOWNLOAD_READ_TIMEOUT"),
    "notify_timeout": (("dispatch", "notify_timeout"), "JOBTRAIL_NOTIFY_TIMEOUT"),
    "notify_concurrency": (("dispatch", "notify_concurrency"), "JOBTRAIL_NOTIFY_CONCURRENCY"),
    "lease_seconds": (("dispatch", "lease_seconds"), "JOBTRAIL_LEASE_SECONDS"),
    "smtp_url": (("notify", "smtp_url"), "JOBTRAIL_SMTP_URL"),
    "email_from": (("notify", "email_from"), "JOBTRAIL_EMAIL_FROM"),
    "email_to": (("notify", "email_to"), "JOBTRAIL_EMAIL_TO"),
    "sse_read_timeout": (("listeners", "sse_read_timeout"), "JOBTRAIL_SSE_READ_TIMEOUT"),
    "poll_min_interval": (("listeners", "poll_min_interval"), "JOBTRAIL_POLL_MIN_INTERVAL"),
    "poll_max_interval": (("listeners", "poll_max_interval"), "JOBTRAIL_POLL_MAX_INTERVAL"),
    "poll_age_factor": (("listeners", "poll_age_factor"), "JOBTRAIL_POLL_AGE_FACTOR"),
    "poll_concurrency": (("listeners", "poll_concurrency"), "JOBTRAIL_POLL_CONCURRENCY"),
    "leader_ttl": (("listeners", "leader_ttl"), "JOBTRAIL_LEADER_TTL"),
    "deliveries_days": (("retention", "deliveries_days"), "JOBTRAIL_RETAIN_DELIVERIES_DAYS"),
    "rejected_days": (("retention", "rejected_days"), "JOBTRAIL_RETAIN_REJECTED_DAYS"),
    "notifications_days": (("retention", "notifications_days"), "JOBTRAIL_RETAIN_NOTIFICATIONS_DAYS"),
    "jobs_days": (("retention", "jobs_days"), "JOBTRAIL_RETAIN_JOBS_DAYS"),
    "retention_interval": (("retention", "interval"), "JOBTRAIL_RETENTION_INTERVAL"),
}
for _name in PROVIDERS:
    _SIMPLE[f"{_name}_api_key"] = (("providers", _name, "api_key"), f"{_name.upper()}_API_KEY")
    _SIMPLE[f"{_name}_base_url"] = (("providers", _name, "base_url"), f"{_name.upper()}_BASE_URL")

_TOP_KEYS = {path[0] for path, _ in _SIMPLE.values()}


def default_store_url(data_dir: Path) -> str:
    """The store when none is set: a SQLite file in the data directory."""
    return f"sqlite:///{(data_dir / 'jobtrail.db')}"


def environment_names() -> frozenset[str]:
    """Every environment variable jobtrail reads its settings from."""
    return frozenset({env for _, env in _SIMPLE.values()} | {"JOBTRAIL_CONFIG"})


def load(config: str | Path | None, environ: Mapping[str, str]) -> Settings:
    """Read `config` (or `JOBTRAIL_CONFIG`), let the environment win, check every value."""
    path = config or environ.get("JOBTRAIL_CONFIG")
    document = _read_toml(Path(path), "--config" if config else "JOBTRAIL_CONFIG") if path else {}
    raw: dict[str, tuple[Any, str]] = {}
    for name, (keys, env) in _SIMPLE.items():
        if env in environ and environ[env] != "":
            raw[name] = (environ[env], env)
        else:
            value = _dig(document, keys)
            if value is not None:
                raw[name] = (value, ".".join(keys))
    return _build(raw, _table(document, "notify").get("rules"))


def _read_toml(path: Path, named: str) -> dict[str, Any]:
    """The file `named` (`--config` or `JOBTRAIL_CONFIG`, for the errors) points at."""
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(named, f"cannot read {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(named, f"{path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(document) - _TOP_KEYS)
    if unknown:
        raise ConfigError(unknown[0], f"unknown setting in {path}")
    sections = (
        ("notify", _section_keys("notify") | {"rules"}),
        ("dispatch", _section_keys("dispatch")),
        ("listeners", _section_keys("listeners")),
        ("retention", _section_keys("retention")),
        ("providers", set(PROVIDERS)),
    )
    for section, known in sections:
        extra = sorted(set(_table(document, section)) - known)
        if extra:
            raise ConfigError(f"{section}.{extra[0]}", f"unknown setting in {path}")
    for name in PROVIDERS:
        extra = sorted(set(_table(_table(document, "providers"), name)) - {"api_key", "base_url"})
        if extra:
            raise ConfigError(f"providers.{name}.{extra[0]}", f"unknown setting in {path}")
    return document


def _section_keys(section: str) -> set[str]:
    return {keys[1] for keys, _ in _SIMPLE.values() if keys[0] == section and len(keys) == 2}


def _table(document: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(key, "must be a table")
    return value


def _dig(document: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    node: Any = document
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _build(raw: Mapping[str, tuple[Any, str]], rules: Any = None) -> Settings:
    def get(name: str) -> tuple[Any, str]:
        return raw.get(name, (None, _SIMPLE[name][1]))

    data_dir = Path(values.string(*get("data_dir")) or "./jobtrail-data")
    store_url = values.store_url(*get("store_url")) or default_store_url(data_dir)
    host = values.string(*get("host")) or "127.0.0.1"
    api_token = values.token(*get("api_token"))
    if not values.is_loopback(host) and not api_token:
        raise ConfigError("JOBTRAIL_API_TOKEN", f"is required to listen on {host}, beyond loopback")
    providers = {
        name: ProviderSettings(
            name,
            values.string(*get(f"{name}_api_key")),
            values.url(*get(f"{name}_base_url")),
        )
        for name in PROVIDERS
    }
    return Settings(
        data_dir=data_dir,
        store_url=store_url,
        host=host,
        port=values.whole(*get("port"), low=1, high=65535) or 8080,
        public_url=values.url(*get("public_url")),
        api_token=api_token,
        webhook_token=values.token(*get("webhook_token")),
        metrics_token=values.token(*get("metrics_token")),
        max_body_bytes=values.whole(*get("max_body_bytes"), low=1024, high=MAX_BODY_LIMIT) or 1024 * 1024,
        refused_bytes_per_minute=values.whole(*get("refused_bytes_per_minute"), low=64 * 1024, high=2**30)
        or 1024 * 1024,
        download_allow_hosts=values.items(*get("download_allow_hosts")),
        log_format=values.choice(*get("log_format"), ("auto", "json", "console")) or "auto",
        log_level=values.choice(*get("log_level"), ("debug", "info", "warning", "error")) or "info",
        providers=providers,
        notify=_notify(get, rules),
        listeners=_listeners(get),
        retention=_retention(get),
        dispatch=_dispatch(get),
    )


def _dispatch(get: Any) -> DispatchSettings:
    defaults = DispatchSettings()
    schedule, schedule_name = get("retry_schedule")
    delays = defaults.retry_delays
    if schedule is not None:
        text = values.string(schedule, schedule_name) or ""
        try:
            delays = _delays(text)
        except ValueError as exc:
            raise ConfigError(schedule_name, f"must be waits like 5s,5m,30m,2h: {exc}") from None
    return DispatchSettings(
        retry_delays=delays,
        download_max_bytes=values.whole(*get("download_max_bytes"), low=1, high=2**50)
        or defaults.download_max_bytes,
        download_timeout=values.seconds(*get("download_timeout"), low=1, high=86400)
        or defaults.download_timeout,
        download_concurrency=values.whole(*get("download_concurrency"), low=1, high=64)
        or defaults.download_concurrency,
        download_read_timeout=values.seconds(*get("download_read_timeout"), low=0.05, high=3600)
        or defaults.download_read_timeout,
        notify_timeout=values.seconds(*get("notify_timeout"), low=0.1, high=600) or defaults.notify_timeout,
        notify_concurrency=values.whole(*get("notify_concurrency"), low=1, high=256)
        or defaults.notify_concurrency,
        lease_seconds=values.seconds(*get("lease_seconds"), low=3, high=3600) or defaults.lease_seconds,
    )


def _delays(text: str) -> tuple[float, ...]:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    delays = []
    for part in (p.strip() for p in text.split(",")):
        number, unit = part[:-1], part[-1:]
        if unit not in units or not (number.isascii() and number.isdigit() and len(number) <= 9):
            raise ValueError(f"{part[:20]!r} is not a wait like 30s, 5m, 2h or 1d")
        delays.append(float(int(number) * units[unit]))
    if len(delays) > 50:
        raise ValueError("at most 50 waits")
    return tuple(delays)


def _listeners(get: Any) -> ListenerSettings:
    defaults = ListenerSettings()
    low, high = get("poll_min_interval"), get("poll_max_interval")
    min_interval = values.seconds(*low, low=0.05, high=3600) or defaults.poll_min_interval
    max_interval = values.seconds(*high, low=0.05, high=86400) or defaults.poll_max_interval
    if max_interval < min_interval:
        raise ConfigError(high[1], f"must not be below the minimum interval ({min_interval:g} s)")
    return ListenerSettings(
        sse_read_timeout=values.seconds(*get("sse_read_timeout"), low=0.05, high=3600)
        or defaults.sse_read_timeout,
        poll_min_interval=min_interval,
        poll_max_interval=max_interval,
        poll_age_factor=values.or_default(
            values.seconds(*get("poll_age_factor"), low=0.0, high=10.0), defaults.poll_age_factor
        ),
        poll_concurrency=values.whole(*get("poll_concurrency"), low=1, high=256) or defaults.poll_concurrency,
        leader_ttl=values.seconds(*get("leader_ttl"), low=3, high=600) or defaults.leader_ttl,
    )


def _retention(get: Any) -> RetentionSettings:
    defaults = RetentionSettings()
    days = 36_500  # a hundred years: longer is "for ever", which is 0
    return RetentionSettings(
        deliveries_days=int(values.or_default(values.whole(*get("deliveries_days"), low=0, high=days), 30)),
        rejected_days=int(values.or_default(values.whole(*get("rejected_days"), low=0, high=days), 30)),
        notifications_days=int(
            values.or_default(values.whole(*get("notifications_days"), low=0, high=days), 30)
        ),
        jobs_days=int(values.or_default(values.whole(*get("jobs_days"), low=0, high=days), 0)),
        interval=values.seconds(*get("retention_interval"), low=1, high=86_400) or defaults.interval,
    )


def _notify(get: Any, rules: Any) -> NotifySettings:
    smtp_url, smtp_name = get("smtp_url")
    smtp = values.string(smtp_url, smtp_name)
    if smtp and urlsplit(smtp).scheme not in ("smtp", "smtps"):
        raise ConfigError(smtp_name, "must be an smtp:// or smtps:// URL")
    if smtp and not urlsplit(smtp).hostname:
        raise ConfigError(smtp_name, "must name a host: smtp://user:pass@host:port")
    email_to = values.items(*get("email_to"))
    for address in email_to:
        if "@" not in address:
            raise ConfigError(get("email_to")[1], f"{address!r} is not an email address")
    secret_value, secret_name = get("webhook_secret")
    secrets = tuple(values.whsec(s, secret_name) or s for s in values.items(secret_value, secret_name, ", "))
    key_value, key_name = get("webhook_signing_key")
    keys = tuple(values.whsk(k, key_name) for k in values.items(key_value, key_name, ", "))
    notify = NotifySettings(
        slack_webhook_url=values.url(*get("slack_webhook_url")),
        webhook_url=values.url(*get("webhook_url")),
        webhook_secrets=secrets,
        webhook_signing_keys=keys,
        smtp_url=smtp,
        email_from=values.string(*get("email_from")),
        email_to=email_to,
        wait_for_downloads=values.boolean(*get("wait_for_downloads"), default=True),
    )
    if notify.webhook_url and not (secrets or keys):
        raise ConfigError(
            "JOBTRAIL_NOTIFY_WEBHOOK_SECRET", "is required to sign JOBTRAIL_NOTIFY_WEBHOOK_URL calls"
        )
    if rules is None:
        return notify
    return replace(notify, rules=_rules(rules, notify.sinks()))


def _rules(value: Any, configured: tuple[str, ...]) -> tuple[Rule, ...]:
    if not isinstance(value, list) or not all(isinstance(r, Mapping) for r in value):
        raise ConfigError("notify.rules", "must be an array of tables: [[notify.rules]]")
    rules = []
    for n, table in enumerate(value):
        name = f"notify.rules[{n}]"
        extra = sorted(set(table) - {"sinks", "statuses", "providers"})
        if extra:
            raise ConfigError(f"{name}.{extra[0]}", "unknown setting")
        sinks = values.items(table.get("sinks"), f"{name}.sinks")
        for sink in sinks:
            if sink not in configured:
                raise ConfigError(
                    f"{name}.sinks", f"{sink!r} is not a configured sink ({', '.join(configured) or 'none'})"
                )
        statuses = values.items(table.get("statuses"), f"{name}.statuses") or TERMINAL
        for status in statuses:
            if status not in STATUSES:
                raise ConfigError(f"{name}.statuses", f"{status!r} is not one of {', '.join(STATUSES)}")
        providers = values.items(table.get("providers"), f"{name}.providers")
        for provider in providers:
            if provider not in PROVIDERS:
                raise ConfigError(f"{name}.providers", f"{provider!r} is not one of {', '.join(PROVIDERS)}")
        if not sinks:
            raise ConfigError(f"{name}.sinks", "name at least one sink")
        rules.append(Rule(sinks, statuses, providers))
    return tuple(rules)
