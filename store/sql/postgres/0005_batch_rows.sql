-- The rows one batch of intakes writes (store/postgres/writes.py, DELIVER), each table's
-- sent as one array of these: asyncpg checks every element of an array parameter against
-- collections.abc in Python, so one array per column cost a replica 1-2 us per value; a
-- record's fields go through their codecs without that.

CREATE TYPE delivery_row AS (
    source text, provider text, job_id text, received_at timestamptz, headers jsonb, body bytea,
    body_size integer, verdict text, reason text
);
CREATE TYPE job_row AS (
    provider text, job_id text, status text, progress integer, result_urls jsonb, error text,
    provider_status text, terminals jsonb, params jsonb, seen jsonb, created_at timestamptz,
    updated_at timestamptz
);
CREATE TYPE outbox_row AS (
    key text, kind text, provider text, job_id text, sink text, payload jsonb, status text
);
CREATE TYPE event_row AS (
    n bigint, provider text, job_id text, type text, source text, data jsonb, delivery integer,
    fingerprint text
);
