"""The CLI commands that ask a running `jobtrail serve` over its API (`submit`, `track`):
they act where the server's keys are, not the shell's."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import aiohttp

from jobtrail.core.settings import Settings


async def submit(settings: Settings, args: argparse.Namespace) -> int:
    from jobtrail.providers import submission

    options = {
        "upscale_factor": args.upscale_factor,
        "resolution": args.resolution,
        "fps": args.fps,
        "webhook_mode": args.webhook_mode,
        "model": args.model,
    }
    given = {k: v for k, v in options.items() if v is not None}
    try:
        submission.validate(args.provider, args.video, given)
    except submission.InvalidSubmission as exc:
        print(f"jobtrail: {exc}", file=sys.stderr)
        return 2
    body = {"provider": args.provider, "video": args.video, **given}
    doc = await _post(settings, args, "/api/jobs/submit", body, (201,))
    if doc is None:
        return 1
    follow = f"jobtrail jobs show {doc['provider']} {doc['id']}"
    print(f"{doc['provider']} {doc['id']}: {doc['status']} (tracked; follow it with `{follow}`)")
    return 0


async def track(settings: Settings, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"provider": args.provider, "id": args.job_id}
    if args.model:
        body["model"] = args.model
    if args.download_url:
        body["download_url"] = args.download_url
    if args.wait_for_key:
        body["wait_for_key"] = True
    doc = await _post(settings, args, "/api/jobs", body, (200, 201))
    if doc is None:
        return 1
    print(
        f"{doc['provider']} {doc['id']}: {doc['status']} (follow it with `jobtrail jobs show "
        f"{doc['provider']} {doc['id']}`)"
    )
    return 0


async def _post(
    settings: Settings, args: argparse.Namespace, path: str, body: dict[str, Any], ok: tuple[int, ...]
) -> dict[str, Any] | None:
    """POST `body` to the server; its answer, or None once the error is printed."""
    api = (args.api or f"http://{settings.host}:{settings.port}").rstrip("/")
    headers = {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{api}{path}", json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=60)
            ) as response,
        ):
            doc = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        print(
            f"jobtrail: cannot reach jobtrail at {api}: {exc} (is `jobtrail serve` running?)", file=sys.stderr
        )
        return None
    if response.status in ok and isinstance(doc, dict):
        return doc
    said = doc.get("message", doc) if isinstance(doc, dict) else doc
    print(f"jobtrail: {api} answered {response.status}: {said}", file=sys.stderr)
    key = f"{str(body['provider']).upper()}_API_KEY"
    if isinstance(doc, dict) and doc.get("error") == "provider_not_configured" and os.environ.get(key):
        print(
            f"jobtrail: {key} is set in this shell, but the server at {api} does not have it", file=sys.stderr
        )
    return None
