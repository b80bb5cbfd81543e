"""Standard Webhooks signatures (https://www.standardwebhooks.com). Pure.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`. Each `whsec_<base64>`
secret gives one `v1,<base64 HMAC-SHA256>`; each Ed25519 `whsk_<base64>` key one
`v1a,<base64 signature>`. Several are sent space-separated while secrets rotate, and a
receiver accepts the request when any one verifies. The id is stable across retries so
receivers can deduplicate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class BadKey(ValueError):
    """A secret or key that is not in the expected format."""


def secret_bytes(secret: str) -> bytes:
    if not secret.startswith("whsec_"):
        raise BadKey("a Standard Webhooks secret starts with whsec_")
    try:
        return base64.b64decode(secret[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadKey("the part after whsec_ is not base64") from exc


def private_key(text: str) -> Ed25519PrivateKey:
    """`whsk_<base64 of the 32-byte seed>` as an Ed25519 key."""
    if not text.startswith("whsk_"):
        raise BadKey("an Ed25519 signing key starts with whsk_")
    try:
        raw = base64.b64decode(text[len("whsk_") :], validate=True)
        return Ed25519PrivateKey.from_private_bytes(raw[:32])
    except (binascii.Error, ValueError) as exc:
        raise BadKey("the part after whsk_ is not a base64 Ed25519 key") from exc


def public_key(key: Ed25519PrivateKey) -> str:
    """The `whpk_` public key to give receivers."""
    return "whpk_" + base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def webhook_id(stable_key: str) -> str:
    """A message id derived from the outbox key: the same for every retry."""
    return "msg_" + hashlib.sha256(stable_key.encode()).hexdigest()[:32]


def signature(
    msg_id: str,
    timestamp: int,
    body: bytes,
    secrets: Sequence[str] = (),
    keys: Sequence[Ed25519PrivateKey] = (),
) -> str:
    """The `webhook-signature` header value."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    parts = [
        "v1," + base64.b64encode(hmac.new(secret_bytes(s), content, hashlib.sha256).digest()).decode()
        for s in secrets
    ]
    parts += ["v1a," + base64.b64encode(key.sign(content)).decode() for key in keys]
    return " ".join(parts)


def headers(
    msg_id: str,
    timestamp: int,
    body: bytes,
    secrets: Sequence[str] = (),
    keys: Sequence[Ed25519PrivateKey] = (),
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(msg_id, timestamp, body, secrets, keys),
    }


def verify(
    headers: dict[str, str], body: bytes, secrets: Sequence[str], now: int, tolerance: int = 300
) -> bool:
    """Whether a `v1,` signature in `headers` signs `body` with one of `secrets`, and the
    timestamp is within `tolerance` seconds of `now` (what a receiver checks)."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp = lower.get("webhook-id", ""), lower.get("webhook-timestamp", "")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12) or abs(now - int(stamp)) > tolerance:
        return False
    expected = {signature(msg_id, int(stamp), body, [s]) for s in secrets}
    given = lower.get("webhook-signature", "").split(" ")
    return any(hmac.compare_digest(g, e) for g in given for e in expected)
