"""`GET /api/openapi.json`: an OpenAPI 3.1 description of every route.

Kept true by tests/integration/test_openapi.py (every route described, every description
a route) and by a schemathesis run against a live server (tests/e2e/test_schemathesis.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jobtrail.core.model import PROVIDERS, Status
from jobtrail.receiver.answer import json_answer

_STR = {"type": "string"}
_NULL_STR = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": _STR, "message": _STR},
}
_PROVIDER = {"type": "string", "enum": list(PROVIDERS)}
_DOWNLOAD = {
    "type": "object",
    "properties": {
        "url": _NULL_STR,
        "status": _STR,
        "path": _NULL_STR,
        "bytes": {"type": ["integer", "null"]},
        "sha256": _NULL_STR,
        "error": _NULL_STR,
    },
}
_NOTIFICATION = {
    "type": "object",
    "properties": {
        "sink": _STR,
        "status": _STR,
        "attempts": {"type": "integer"},
        "last_error": _NULL_STR,
    },
}
_JOB = {
    "type": "object",
    "required": ["provider", "id", "status", "created_at", "updated_at", "downloads", "notifications"],
    "properties": {
        "provider": _PROVIDER,
        "id": _STR,
        "status": {"type": "string", "enum": [s.value for s in Status]},
        "progress": {"type": ["integer", "null"]},
        "result_urls": {"type": "array", "items": _STR},
        "error": _NULL_STR,
        "provider_status": _NULL_STR,
        "conflict": {"type": ["array", "null"], "items": _STR},
        "params": {"type": "object"},
        "created_at": _TIME,
        "updated_at": _TIME,
        "downloads": {"type": "array", "items": _DOWNLOAD},
        "notifications": {"type": "array", "items": _NOTIFICATION},
        "polls": {  # one job on its own: how often the poller asked about it
            "type": ["object", "null"],
            "required": ["count", "last_at", "last_digest"],
            "properties": {"count": {"type": "integer"}, "last_at": _TIME, "last_digest": _STR},
        },
    },
}
_EVENT = {
    "type": "object",
    "required": ["seq", "provider", "job_id", "type", "source", "at", "data"],
    "properties": {
        "seq": {"type": "integer"},
        "provider": _PROVIDER,
        "job_id": _STR,
        "type": _STR,
        "source": _STR,
        "at": _TIME,
        "data": {"type": "object"},
    },
}
_EFFECT = {
    "description": "What a status report did to the job (null for other events): `changed` it, was "
    "`ignored` (late, or said nothing new) or is a `conflict` (another terminal status; the first stands)",
    "oneOf": [
        {
            "type": "object",
            "required": ["kind", "note"],
            "properties": {
                "kind": {"type": "string", "enum": ["changed", "ignored", "conflict"]},
                "note": _STR,
            },
        },
        {"type": "null"},
    ],
}
_OUTBOX_ITEM = {
    "type": "object",
    "required": ["id", "kind", "sink", "provider", "job_id", "status", "attempts"],
    "properties": {
        "id": {"type": "integer"},
        "key": _STR,
        "kind": {"type": "string", "enum": ["download", "notify"]},
        "sink": _STR,
        "provider": _PROVIDER,
        "job_id": _STR,
        "status": {"type": "string", "enum": ["pending", "done", "dead"]},
        "attempts": {"type": "integer"},
        "last_error": _NULL_STR,
        "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
        "created_at": _TIME,
        "updated_at": _TIME,
        "payload": {"type": "object"},
    },
}
_DELIVERY = {
    "type": "object",
    "required": ["id", "source", "provider", "job_id", "received_at", "verdict", "reason", "body_size"],
    "properties": {
        "id": {"type": "integer"},
        "source": _STR,
        "provider": _STR,
        "job_id": _NULL_STR,
        "received_at": _TIME,
        "verdict": {"type": "string", "enum": ["accepted", "duplicate", "rejected"]},
        "reason": _NULL_STR,
        "body_size": {"type": "integer"},
        "headers": {"type": "object", "additionalProperties": _STR},
        "body": _STR,
        "body_kept": {"type": "integer"},
    },
}
_DELIVERY_ANSWER = {
    "type": "object",
    "required": ["delivery_id", "verdict"],
    "properties": {
        "delivery_id": {"type": "integer"},
        "verdict": {"type": "string", "enum": ["accepted", "duplicate", "stale", "conflict"]},
    },
}
_COMPONENT = {
    "type": "object",
    "properties": {
        "kind": _STR,
        "state": _STR,
        "healthy": {"type": "boolean"},
        "reason": _NULL_STR,
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "Malformed input; `error` says which parameter",
        401: "A token is missing or wrong",
        404: "Not found",
        405: "Webhooks are sent with POST",
        409: "Conflicts with the current state",
        413: "The body is larger than JOBTRAIL_MAX_BODY_BYTES",
        415: "The body is not JSON",
        429: "Too many refused requests from this address",
        502: "The provider could not be reached or refused",
        503: "The store is unavailable: nothing was taken, send it again",
    }
    return {str(code): _json(_ref("Error"), words[code]) for code in codes}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or _STR}


_PAGE = {"type": "integer", "minimum": 1, "maximum": 500}
_OUTBOX_STATUS = {"type": "string", "enum": ["pending", "done", "dead"]}
_ALIVE = {"type": "object", "required": ["status"], "properties": {"status": {"const": "alive"}}}
_SINK = {"type": "string", "enum": ["download", "slack", "webhook", "email"]}
# The bearer token once JOBTRAIL_API_TOKEN is set; open before.
_API: list[dict[str, list[str]]] = [{"bearer": []}, {}]
_WEBHOOK_BODY = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}


def _ran(field: str, description: str) -> dict[str, Any]:
    """The answers of a route that runs one outbox item again (receiver/api.py `_run_entry`)."""
    schema = {
        "type": "object",
        "required": [field],
        "properties": {field: {"type": "integer"}, "event": {"oneOf": [_ref("Event"), {"type": "null"}]}},
    }
    return {"200": _json(schema, description)} | _errors(401, 404, 409, 503)


_WEBHOOK_ANSWERS = {"200": _json(_DELIVERY_ANSWER, "Kept")} | _errors(400, 401, 413, 415, 429, 503)


def document() -> dict[str, Any]:
    job_path = [_path("provider", _PROVIDER), _path("job_id")]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobtrail",
            "version": "1",
            "description": "Tracks asynchronous cloud media jobs (Pixazo, Apiframe, Oxen.ai, Venice.ai): "
            "webhook intake, jobs and their timelines, the outbox, health and metrics.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "JOBTRAIL_API_TOKEN"},
                "metrics": {"type": "http", "scheme": "bearer", "description": "JOBTRAIL_METRICS_TOKEN"},
                "apiframe": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Webhook-Signature",
                    "description": "HMAC-SHA256 of the raw body, in hex (bare or `sha256=<hex>`), keyed "
                    "with the raw SHA-256 digest of APIFRAME_API_KEY",
                },
            },
            "schemas": {
                "Error": _ERROR,
                "Job": _JOB,
                "Event": _EVENT,
                "OutboxItem": _OUTBOX_ITEM,
                "Delivery": _DELIVERY,
            },
        },
        "paths": {
            "/webhooks/pixazo/{token}": {
                "post": {
                    "summary": "A Pixazo callback; the token in the path is JOBTRAIL_WEBHOOK_TOKEN",
                    "parameters": [_path("token")],
                    "requestBody": _WEBHOOK_BODY,
                    "responses": {"200": _json(_DELIVERY_ANSWER, "Kept")}
                    | _errors(400, 401, 413, 415, 429, 503),
                }
            },
            "/webhooks/apiframe": {
                "post": {
                    "summary": "An Apiframe callback, signed in X-Webhook-Signature",
                    "security": [{"apiframe": []}],
                    "requestBody": _WEBHOOK_BODY,
                    "responses": {"200": _json(_DELIVERY_ANSWER, "Kept")}
                    | _errors(400, 401, 413, 415, 429, 503),
                }
            },
            "/webhooks/{provider}": {
                "post": {
                    "summary": "Any other provider: no webhook route (Oxen streams, Venice is polled); "
                    "`apiframe` here is the route above, and answers as it does",
                    "parameters": [_path("provider", {"type": "string", "maxLength": 64})],
                    "responses": _WEBHOOK_ANSWERS | _errors(404, 405),
                }
            },
            "/api/jobs": {
                "get": {
                    "summary": "Tracked jobs, newest first",
                    "security": _API,
                    "parameters": [
                        _query("provider", _PROVIDER, "only this provider's"),
                        _query("status", {"type": "string", "enum": [s.value for s in Status]}, "only these"),
                        _query("q", {"type": "string", "minLength": 1, "maxLength": 128}, "a part of the id"),
                        _query("since", _TIME, "created at or after"),
                        _query("until", _TIME, "created before"),
                        _query("conflict", {"type": "boolean"}, "true: only jobs whose sources disagree"),
                        _query("limit", _PAGE, "page size (50)"),
                        _query("cursor", _STR, "next_cursor of the page before"),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["jobs", "next_cursor"],
                                "properties": {
                                    "jobs": {"type": "array", "items": _ref("Job")},
                                    "next_cursor": _NULL_STR,
                                },
                            },
                            "A page of jobs",
                        )
                    }
                    | _errors(400, 401),
                },
                "post": {
                    "summary": "Track a job submitted elsewhere (idempotent)",
                    "security": _API,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["provider", "id"],
                                    "properties": {
                                        "provider": _PROVIDER,
                                        "id": {"type": "string", "minLength": 1, "maxLength": 256},
                                        "model": {"type": "string", "maxLength": 128},
                                        "download_url": {"type": "string", "format": "uri"},
                                        "wait_for_key": {
                                            "type": "boolean",
                                            "description": "track it although the server has no key for "
                                            "the provider yet (else 409 provider_not_configured)",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(_ref("Job"), "Already tracked"),
                        "201": _json(_ref("Job"), "Now tracked"),
                    }
                    | _errors(400, 401, 409, 413, 415, 503),
                },
            },
            "/api/jobs/submit": {
                "post": {
                    "summary": "Start a job at a provider with jobtrail's push channel wired, and track it",
                    "security": _API,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["provider", "video"],
                                    "properties": {"provider": _PROVIDER, "video": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": {"201": _json(_ref("Job"), "Submitted and tracked")}
                    | _errors(400, 401, 409, 413, 415, 502, 503),
                }
            },
            "/api/jobs/{provider}/{job_id}": {
                "get": {
                    "summary": "One job, with its downloads and notifications",
                    "security": _API,
                    "parameters": job_path,
                    "responses": {"200": _json(_ref("Job"), "The job")} | _errors(400, 401, 404),
                }
            },
            "/api/jobs/{provider}/{job_id}/events": {
                "get": {
                    "summary": "The job's timeline, in order",
                    "security": _API,
                    "parameters": [
                        *job_path,
                        _query("after", {"type": "integer", "minimum": 0}, "events after this seq"),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}, "page size"),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["events", "duplicates"],
                                "properties": {
                                    "events": {
                                        "type": "array",
                                        "items": {
                                            "allOf": [
                                                _ref("Event"),
                                                {"type": "object", "properties": {"effect": _EFFECT}},
                                            ]
                                        },
                                    },
                                    "duplicates": {
                                        "type": "array",
                                        "description": "reports that said nothing new, kept as deliveries",
                                        "items": _ref("Delivery"),
                                    },
                                },
                            },
                            "Events, each with its effect, and the duplicate reports",
                        )
                    }
                    | _errors(400, 401, 404),
                }
            },
            "/api/events": {
                "get": {
                    "summary": "Each event as it is appended (Server-Sent Events; resumes at Last-Event-ID)",
                    "security": _API,
                    "parameters": [
                        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": _STR},
                        _query("after", {"type": "integer", "minimum": 0}, "start after this seq"),
                        _query("provider", _PROVIDER, "only this provider's events"),
                        _query(
                            "job",
                            {"type": "string", "minLength": 1, "maxLength": 256},
                            "only this job's (with provider)",
                        ),
                    ],
                    "responses": {
                        "200": {
                            "description": "An event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        }
                    }
                    | _errors(400, 401),
                }
            },
            "/api/outbox": {
                "get": {
                    "summary": "Downloads and notifications, oldest first",
                    "security": _API,
                    "parameters": [
                        _query(
                            "status", {"type": "string", "enum": ["pending", "done", "dead"]}, "only these"
                        ),
                        _query("sink", _SINK, "download, slack, webhook or email"),
                        _query("since", {"type": "string", "format": "date-time"}, "created at or after"),
                        _query("until", {"type": "string", "format": "date-time"}, "created before"),
                        _query("limit", _PAGE, "page size (100)"),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["items"],
                                "properties": {
                                    "items": {
                                        "type": "array",
                                        "items": _ref("OutboxItem"),
                                    }
                                },
                            },
                            "Outbox items",
                        )
                    }
                    | _errors(400, 401),
                }
            },
            "/api/outbox/replay": {
                "post": {
                    "summary": "Queue the dead items matching again, each once",
                    "security": _API,
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "sink": _SINK,
                                        "since": {"type": "string", "format": "date-time"},
                                        "until": {"type": "string", "format": "date-time"},
                                        "limit": {"type": "integer", "minimum": 1, "maximum": 10_000},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["replayed", "more"],
                                "properties": {"replayed": {"type": "integer"}, "more": {"type": "boolean"}},
                            },
                            "How many were queued, and whether more are dead",
                        )
                    }
                    | _errors(400, 401, 413, 415, 503),
                }
            },
            "/api/outbox/{entry_id}/replay": {
                "post": {
                    "summary": "Run one download or notification again",
                    "security": _API,
                    "parameters": [_path("entry_id")],
                    "responses": _ran("replayed", "Queued"),
                }
            },
            "/api/outbox/{entry_id}/retry": {
                "post": {
                    "summary": "Run a pending or dead item now (pending: its attempt count kept)",
                    "security": _API,
                    "parameters": [_path("entry_id")],
                    "responses": _ran("retried", "Due now"),
                }
            },
            "/api/deliveries": {
                "get": {
                    "summary": "Every inbound delivery, newest first (rejected ones with their reason)",
                    "security": _API,
                    "parameters": [
                        _query(
                            "verdict", {"type": "string", "enum": ["accepted", "duplicate", "rejected"]}, ""
                        ),
                        _query("provider", _PROVIDER, "only this provider's"),
                        _query("since", {"type": "string", "format": "date-time"}, "received at or after"),
                        _query("until", {"type": "string", "format": "date-time"}, "received before"),
                        _query("before", {"type": "integer", "minimum": 1}, "next_before of the page before"),
                        _query("limit", _PAGE, "page size (50)"),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["deliveries", "next_before"],
                                "properties": {
                                    "deliveries": {"type": "array", "items": _ref("Delivery")},
                                    "next_before": {"type": ["integer", "null"]},
                                },
                            },
                            "A page of deliveries",
                        )
                    }
                    | _errors(400, 401),
                }
            },
            "/api/deliveries/{delivery_id}": {
                "get": {
                    "summary": "One delivery as kept: headers (secrets removed) and body",
                    "security": _API,
                    "parameters": [_path("delivery_id")],
                    "responses": {"200": _json(_ref("Delivery"), "The delivery")} | _errors(401, 404),
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This description",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Alive",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["status"],
                                "properties": {"status": {"const": "alive"}},
                            },
                            "The process answers",
                        )
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Ready: the store answers; listeners' state (degraded still takes webhooks)",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["status", "role", "store", "listeners"],
                                "properties": {
                                    "status": {"type": "string", "enum": ["ready", "degraded"]},
                                    "role": {"type": "string", "enum": ["leader", "follower"]},
                                    "store": {"type": "object"},
                                    "listeners": {"type": "object", "additionalProperties": _COMPONENT},
                                },
                            },
                            "Ready or degraded",
                        ),
                        "503": _json({"type": "object"}, "The store is unreachable"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format 0.0.4)",
                    "security": [{"metrics": []}, {}],
                    "responses": {
                        "200": {
                            "description": "Metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    }
                    | _errors(401),
                }
            },
        },
    }


def _every_route_may_refuse_its_url(document: dict[str, Any]) -> dict[str, Any]:
    """Any route answers 400 to a path or query that is not printable UTF-8 (errors.check_url)."""
    for item in document["paths"].values():
        for operation in item.values():
            operation["responses"].setdefault("400", _errors(400)["400"])
    return document


_DOCUMENT = _every_route_may_refuse_its_url(document())


async def openapi(request: web.Request) -> web.Response:
    return json_answer(_DOCUMENT)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi)
