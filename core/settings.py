"""Configuration: a TOML file, overridden by the environment. Every value is checked here.

A bad value raises `ConfigError` naming the setting (the CLI exits 2 with it). Secrets
normally come from the environment; they are collected in `Settings.secrets()` so the
log redactor can remove them wherever they appear.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.model import PROVIDERS

DEFAULT_BASE_URLS = {
    "pixazo": "https://gateway.pixazo.ai",
    "apiframe": "https://api.apiframe.ai",
    "oxen": "https://hub.oxen.ai",
    "venice": "https://api.venice.ai",
}
MIN_TOKEN_LENGTH = 16
MAX_BODY_LIMIT = 64 * 1024 * 1024


class ConfigError(Exception):
    """A setting with a bad value. `setting` is the name a user would fix."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    api_key: str | None
    base_url: str

    @property
    def active(self) -> bool:
        return bool(self.api_key)


@dataclass(frozen=True, slots=True)
class NotifySettings:
    slack_webhook_url: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    smtp_url: str | None = None
    email_from: str | None = None
    email_to: tuple[str, ...] = ()

    def sinks(self) -> tuple[str, ...]:
        found = []
        if self.slack_webhook_url:
            found.append("slack")
        if self.webhook_url:
            found.append("webhook")
        if self.smtp_url and self.email_to:
            found.append("email")
        return tuple(found)


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


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("./jobtrail-data")
    store_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    api_token: str | None = None
    webhook_token: str | None = None
    max_body_bytes: int = 1024 * 1024
    download_allow_hosts: tuple[str, ...] = ()
    log_format: str = "auto"
    log_level: str = "info"
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    notify: NotifySettings = NotifySettings()
    listeners: ListenerSettings = ListenerSettings()

    def provider(self, name: str) -> ProviderSettings:
        return self.providers.get(name) or ProviderSettings(name, None, DEFAULT_BASE_URLS[name])

    def secrets(self) -> tuple[str, ...]:
        """Every configured secret value, for redaction."""
        values = [self.api_token, self.webhook_token, self.notify.webhook_secret]
        values += [p.api_key for p in self.providers.values()]
        if self.notify.smtp_url:
            password = urlsplit(self.notify.smtp_url).password
            values.append(password)
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
    "max_body_bytes": (("max_body_bytes",), "JOBTRAIL_MAX_BODY_BYTES"),
    "download_allow_hosts": (("download_allow_hosts",), "JOBTRAIL_DOWNLOAD_ALLOW_HOSTS"),
    "log_format": (("log_format",), "JOBTRAIL_LOG_FORMAT"),
    "log_level": (("log_level",), "JOBTRAIL_LOG_LEVEL"),
    "slack_webhook_url": (("notify", "slack_webhook_url"), "JOBTRAIL_SLACK_WEBHOOK_URL"),
    "webhook_url": (("notify", "webhook_url"), "JOBTRAIL_NOTIFY_WEBHOOK_URL"),
    "webhook_secret": (("notify", "webhook_secret"), "JOBTRAIL_NOTIFY_WEBHOOK_SECRET"),
    "smtp_url": (("notify", "smtp_url"), "JOBTRAIL_SMTP_URL"),
    "email_from": (("notify", "email_from"), "JOBTRAIL_EMAIL_FROM"),
    "email_to": (("notify", "email_to"), "JOBTRAIL_EMAIL_TO"),
    "sse_read_timeout": (("listeners", "sse_read_timeout"), "JOBTRAIL_SSE_READ_TIMEOUT"),
    "poll_min_interval": (("listeners", "poll_min_interval"), "JOBTRAIL_POLL_MIN_INTERVAL"),
    "poll_max_interval": (("listeners", "poll_max_interval"), "JOBTRAIL_POLL_MAX_INTERVAL"),
    "poll_age_factor": (("listeners", "poll_age_factor"), "JOBTRAIL_POLL_AGE_FACTOR"),
    "poll_concurrency": (("listeners", "poll_concurrency"), "JOBTRAIL_POLL_CONCURRENCY"),
}
for _name in PROVIDERS:
    _SIMPLE[f"{_name}_api_key"] = (("providers", _name, "api_key"), f"{_name.upper()}_API_KEY")
    _SIMPLE[f"{_name}_base_url"] = (("providers", _name, "base_url"), f"{_name.upper()}_BASE_URL")

_TOP_KEYS = {path[0] for path, _ in _SIMPLE.values()}


def load(config: str | Path | None, environ: Mapping[str, str]) -> Settings:
    """Read `config` (or `JOBTRAIL_CONFIG`), let the environment win, check every value."""
    path = config or environ.get("JOBTRAIL_CONFIG")
    document = _read_toml(Path(path)) if path else {}
    raw: dict[str, tuple[Any, str]] = {}
    for name, (keys, env) in _SIMPLE.items():
        if env in environ and environ[env] != "":
            raw[name] = (environ[env], env)
        else:
            value = _dig(document, keys)
            if value is not None:
                raw[name] = (value, ".".join(keys))
    return _build(raw)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(document) - _TOP_KEYS)
    if unknown:
        raise ConfigError(unknown[0], f"unknown setting in {path}")
    sections = (
        ("notify", _section_keys("notify")),
        ("listeners", _section_keys("listeners")),
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


def _build(raw: Mapping[str, tuple[Any, str]]) -> Settings:
    def get(name: str) -> tuple[Any, str]:
        return raw.get(name, (None, _SIMPLE[name][1]))

    data_dir = Path(_string(*get("data_dir")) or "./jobtrail-data")
    store_url = _store_url(*get("store_url")) or f"sqlite:///{(data_dir / 'jobtrail.db')}"
    host = _string(*get("host")) or "127.0.0.1"
    api_token = _token(*get("api_token"))
    if not _is_loopback(host) and not api_token:
        raise ConfigError("JOBTRAIL_API_TOKEN", f"is required to listen on {host}, beyond loopback")
    providers = {
        name: ProviderSettings(
            name,
            _string(*get(f"{name}_api_key")),
            _url(*get(f"{name}_base_url")) or DEFAULT_BASE_URLS[name],
        )
        for name in PROVIDERS
    }
    return Settings(
        data_dir=data_dir,
        store_url=store_url,
        host=host,
        port=_int(*get("port"), low=1, high=65535) or 8080,
        public_url=_url(*get("public_url")),
        api_token=api_token,
        webhook_token=_token(*get("webhook_token")),
        max_body_bytes=_int(*get("max_body_bytes"), low=1024, high=MAX_BODY_LIMIT) or 1024 * 1024,
        download_allow_hosts=_list(*get("download_allow_hosts")),
        log_format=_choice(*get("log_format"), ("auto", "json", "console")) or "auto",
        log_level=_choice(*get("log_level"), ("debug", "info", "warning", "error")) or "info",
        providers=providers,
        notify=_notify(get),
        listeners=_listeners(get),
    )


def _listeners(get: Any) -> ListenerSettings:
    defaults = ListenerSettings()
    low, high = get("poll_min_interval"), get("poll_max_interval")
    min_interval = _seconds(*low, low=0.05, high=3600) or defaults.poll_min_interval
    max_interval = _seconds(*high, low=0.05, high=86400) or defaults.poll_max_interval
    if max_interval < min_interval:
        raise ConfigError(high[1], f"must not be below the minimum interval ({min_interval:g} s)")
    return ListenerSettings(
        sse_read_timeout=_seconds(*get("sse_read_timeout"), low=0.05, high=3600) or defaults.sse_read_timeout,
        poll_min_interval=min_interval,
        poll_max_interval=max_interval,
        poll_age_factor=_default(
            _seconds(*get("poll_age_factor"), low=0.0, high=10.0), defaults.poll_age_factor
        ),
        poll_concurrency=_int(*get("poll_concurrency"), low=1, high=256) or defaults.poll_concurrency,
    )


def _notify(get: Any) -> NotifySettings:
    smtp_url, smtp_name = get("smtp_url")
    smtp = _string(smtp_url, smtp_name)
    if smtp and urlsplit(smtp).scheme not in ("smtp", "smtps"):
        raise ConfigError(smtp_name, "must be an smtp:// or smtps:// URL")
    if smtp and not urlsplit(smtp).hostname:
        raise ConfigError(smtp_name, "must name a host: smtp://user:pass@host:port")
    email_to = _list(*get("email_to"))
    for address in email_to:
        if "@" not in address:
            raise ConfigError(get("email_to")[1], f"{address!r} is not an email address")
    return NotifySettings(
        slack_webhook_url=_url(*get("slack_webhook_url")),
        webhook_url=_url(*get("webhook_url")),
        webhook_secret=_whsec(*get("webhook_secret")),
        smtp_url=smtp,
        email_from=_string(*get("email_from")),
        email_to=email_to,
    )


def _string(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(name, "must be a string")
    if any(ord(ch) < 32 for ch in value):
        raise ConfigError(name, "must not contain control characters")
    return value.strip() or None


def _int(value: Any, name: str, *, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be a whole number from {low} to {high}")
    if not low <= value <= high:
        raise ConfigError(name, f"must be a whole number from {low} to {high}, not {value}")
    return value


def _default(value: float | None, default: float) -> float:
    return default if value is None else value


def _seconds(value: Any, name: str, *, low: float, high: float) -> float | None:
    """A number of seconds (or a plain number) from `low` to `high`."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigError(name, f"must be a number from {low:g} to {high:g}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ConfigError(name, f"must be a number from {low:g} to {high:g}")
    if not low <= value <= high:
        raise ConfigError(name, f"must be a number from {low:g} to {high:g}, not {value:g}")
    return float(value)


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str | None:
    text = _string(value, name)
    if text is not None and text.lower() not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}")
    return text.lower() if text else None


def _url(value: Any, name: str) -> str | None:
    text = _string(value, name)
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, "must be an http:// or https:// URL with a host")
    return text.rstrip("/")


def _token(value: Any, name: str) -> str | None:
    text = _string(value, name)
    if text is not None and (len(text) < MIN_TOKEN_LENGTH or not text.isascii() or " " in text):
        raise ConfigError(
            name, f"must be at least {MIN_TOKEN_LENGTH} printable ASCII characters without spaces"
        )
    return text


def _whsec(value: Any, name: str) -> str | None:
    text = _string(value, name)
    if text is None:
        return None
    if not text.startswith("whsec_"):
        raise ConfigError(name, "must be a Standard Webhooks secret: whsec_<base64>")
    try:
        key = base64.b64decode(text[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(name, "the part after whsec_ must be base64") from exc
    if len(key) < 24:
        raise ConfigError(name, "the key must be at least 24 bytes")
    return text


def _list(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ConfigError(name, "must be a comma-separated string or a list of strings")
    return tuple(i for i in items if i)


def _store_url(value: Any, name: str) -> str | None:
    text = _string(value, name)
    if text is None:
        return None
    scheme = urlsplit(text).scheme
    if scheme == "sqlite":
        if not text.startswith("sqlite:///") or len(text) <= len("sqlite:///"):
            raise ConfigError(name, "a SQLite URL is sqlite:///PATH (relative) or sqlite:////PATH")
        return text
    if scheme == "memory":
        return text
    if scheme in ("postgresql", "postgres"):
        raise ConfigError(name, "the PostgreSQL backend is not available in this version yet")
    raise ConfigError(name, "must be sqlite:///PATH or postgresql://...")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
