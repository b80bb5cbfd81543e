"""Reading one configuration value: each checker returns the value, or raises
`ConfigError` naming the setting a user would fix. Pure."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

MIN_TOKEN_LENGTH = 16


class ConfigError(Exception):
    """A setting with a bad value. `setting` is the name a user would fix."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


def string(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(name, "must be a string")
    if any(ord(ch) < 32 for ch in value):
        raise ConfigError(name, "must not contain control characters")
    return value.strip() or None


_DIGITS = re.compile(r"[0-9]{1,19}")


def whole(value: Any, name: str, *, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):  # ASCII: int("²") fails
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be a whole number from {low} to {high}")
    if not low <= value <= high:
        raise ConfigError(name, f"must be a whole number from {low} to {high}, not {value}")
    return value


def or_default(value: float | None, default: float) -> float:
    return default if value is None else value


def seconds(value: Any, name: str, *, low: float, high: float) -> float | None:
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


def choice(value: Any, name: str, choices: tuple[str, ...]) -> str | None:
    text = string(value, name)
    if text is not None and text.lower() not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}")
    return text.lower() if text else None


def url(value: Any, name: str) -> str | None:
    text = string(value, name)
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, "must be an http:// or https:// URL with a host")
    return text.rstrip("/")


def token(value: Any, name: str) -> str | None:
    text = string(value, name)
    if text is not None and (len(text) < MIN_TOKEN_LENGTH or not text.isascii() or " " in text):
        raise ConfigError(
            name, f"must be at least {MIN_TOKEN_LENGTH} printable ASCII characters without spaces"
        )
    return text


def whsec(value: Any, name: str) -> str | None:
    text = string(value, name)
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


def boolean(value: Any, name: str, *, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    ):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise ConfigError(name, "must be true or false")


def whsk(value: str, name: str) -> str:
    if not value.startswith("whsk_"):
        raise ConfigError(name, "must be an Ed25519 signing key: whsk_<base64>")
    try:
        key = base64.b64decode(value[len("whsk_") :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(name, "the part after whsk_ must be base64") from exc
    if len(key) not in (32, 64):
        raise ConfigError(name, "the key must be 32 bytes (or 64 with its public half)")
    return value


def items(value: Any, name: str, separators: str = ",") -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        for separator in separators[1:]:
            value = value.replace(separator, separators[0])
        items = [v.strip() for v in value.split(separators[0])]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ConfigError(name, "must be a comma-separated string or a list of strings")
    return tuple(i for i in items if i)


def store_url(value: Any, name: str) -> str | None:
    text = string(value, name)
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
        parts = urlsplit(text)
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ConfigError(name, "the port of a PostgreSQL URL must be a number") from None
        if not parts.hostname and "host=" not in parts.query:
            raise ConfigError(name, "a PostgreSQL URL names a host: postgresql://user@host:5432/db")
        return text
    raise ConfigError(name, "must be sqlite:///PATH or postgresql://...")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
