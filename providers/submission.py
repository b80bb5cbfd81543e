"""Submitting a job to a provider: the parameters each accepts (checked before any
request), the request with the push channel wired, and reading the answer. Pure.

- Pixazo: `upscale_factor` 2 or 4; the callback `X-Webhook-URL` is jobtrail's token
  route and `X-Webhook-Mode` is `terminal` (default) or `sync`.
- Apiframe: `resolution` 720p, 1080p or 4k; `fps` 24, 30 or 60; `webhookUrl` with all
  three events and an `Idempotency-Key` derived from the request, so a retried submit
  returns the original job.
- Oxen: `resolution` 1080p, 2k or 4k and `fps` 1-60, both optional; the caller connects
  the stream first (the stream has no replay).
- Venice: `upscale_factor` 1, 2 or 4; `model` (default topaz-video-upscale); polled only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from jobtrail.core.settings import ProviderSettings
from jobtrail.providers import apiframe, catalog, pixazo, replies
from jobtrail.providers.replies import HttpCall

PIXAZO_SUBMIT = "/topaz-upscale-video-753/v1/topaz-upscale-video-request"
OXEN_MODEL = "topazlabs-upscale-starlight-2-5-video"
VENICE_MODEL = "topaz-video-upscale"

_CHOICES: dict[str, dict[str, tuple[Any, ...]]] = {
    "pixazo": {"upscale_factor": (2, 4), "webhook_mode": ("terminal", "sync")},
    "apiframe": {"resolution": ("720p", "1080p", "4k"), "fps": (24, 30, 60)},
    "oxen": {"resolution": ("1080p", "2k", "4k"), "fps": tuple(range(1, 61))},
    "venice": {"upscale_factor": (1, 2, 4), "model": ()},
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "pixazo": {"upscale_factor": 2, "webhook_mode": "terminal"},
    "apiframe": {"resolution": "1080p", "fps": 30},
    "oxen": {},
    "venice": {"upscale_factor": 2, "model": VENICE_MODEL},
}


class InvalidSubmission(ValueError):
    """A parameter the provider would refuse; the message names it and the allowed values."""


class SubmitRefused(Exception):
    """The provider refused the submission; `words` are its own."""

    def __init__(self, status: int, words: str) -> None:
        super().__init__(f"HTTP {status}: {words}")
        self.status, self.words = status, words


@dataclass(frozen=True, slots=True)
class Callback:
    """Where the provider should push: jobtrail's public URL and its Pixazo token."""

    public_url: str | None
    webhook_token: str | None


def validate(provider: str, video: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options with defaults filled in, or `InvalidSubmission` naming the bad one."""
    if provider not in _CHOICES:
        raise InvalidSubmission(f"provider must be one of {', '.join(_CHOICES)}")
    if not isinstance(video, str) or not video.startswith(("https://", "http://")):
        raise InvalidSubmission("video must be an http(s) URL of an MP4, MOV or WebM file")
    allowed = _CHOICES[provider]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InvalidSubmission(f"{unknown[0]!r} is not a {provider} option (options: {', '.join(allowed)})")
    result = {**_DEFAULTS[provider]}
    for name, value in options.items():
        if value is None:
            continue
        choices = allowed[name]
        if name in ("upscale_factor", "fps"):
            value = _number(name, value)
        if choices and value not in choices:
            shown = f"{choices[0]} to {choices[-1]}" if len(choices) > 10 else ", ".join(map(str, choices))
            raise InvalidSubmission(f"{provider} {name} must be {shown}, not {value!r}")
        if name == "model" and (not isinstance(value, str) or not 0 < len(value) <= 128):
            raise InvalidSubmission("model must be a model name")
        result[name] = value
    return result


def _number(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidSubmission(f"{name} must be a whole number")
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) <= 12:
        return int(value)
    if isinstance(value, int):
        return value
    raise InvalidSubmission(f"{name} must be a whole number")


def submit_call(
    provider: str, settings: ProviderSettings, video: str, options: Mapping[str, Any], callback: Callback
) -> HttpCall:
    """The submit request, push channel wired (options from `validate`)."""
    base = settings.base_url or catalog.PROVIDERS[provider].base_url
    key = settings.api_key or ""
    if provider == "pixazo":
        if not callback.public_url or not callback.webhook_token:
            raise InvalidSubmission(
                "Pixazo pushes to a URL: set JOBTRAIL_PUBLIC_URL and JOBTRAIL_WEBHOOK_TOKEN"
            )
        headers = {
            pixazo.KEY_HEADER: key,
            "X-Webhook-URL": f"{callback.public_url}/webhooks/pixazo/{callback.webhook_token}",
            "X-Webhook-Mode": options["webhook_mode"],
        }
        return HttpCall(
            "POST",
            base + PIXAZO_SUBMIT,
            headers,
            {"video_url": video, "upscale_factor": options["upscale_factor"]},
        )
    if provider == "apiframe":
        body: dict[str, Any] = {
            "model": "topaz-video-upscale",
            "topazVideoParams": {
                "video": video,
                "target_resolution": options["resolution"],
                "target_fps": options["fps"],
            },
        }
        if callback.public_url:
            body["webhookUrl"] = f"{callback.public_url}/webhooks/apiframe"
            body["webhookEvents"] = ["progress", "completed", "failed"]
        idempotency = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return HttpCall(
            "POST",
            f"{base}/v2/videos/upscale",
            {apiframe.KEY_HEADER: key, "Idempotency-Key": idempotency},
            body,
        )
    if provider == "oxen":
        body = {"model": OXEN_MODEL, "input_video": video, "num_generations": 1}
        if "resolution" in options:
            body["resolution"] = options["resolution"]
        if "fps" in options:
            body["target_fps"] = options["fps"]
        return HttpCall("POST", f"{base}/api/ai/queue", {"Authorization": f"Bearer {key}"}, body)
    body = {"model": options["model"], "video_url": video, "upscale_factor": options["upscale_factor"]}
    return HttpCall("POST", f"{base}/api/v1/video/queue", {"Authorization": f"Bearer {key}"}, body)


def read_submitted(
    provider: str, status: int, body: bytes, options: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """(the provider's job id, what jobtrail keeps to poll it), or `SubmitRefused`."""
    if status not in (200, 201, 202):
        raise SubmitRefused(status, replies.words(body) or f"HTTP {status}")
    try:
        doc = orjson.loads(body)
        if provider == "pixazo":
            return str(doc["request_id"]), {}
        if provider == "apiframe":
            return str(doc["jobId"]), {}
        if provider == "oxen":
            return str(doc["generations"][0]["generation_id"]), {}
        params = {"model": str(doc.get("model") or options["model"])}
        if doc.get("download_url"):
            params["download_url"] = str(doc["download_url"])
        return str(doc["queue_id"]), params
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise SubmitRefused(status, f"the answer is not understood: {exc}") from exc
