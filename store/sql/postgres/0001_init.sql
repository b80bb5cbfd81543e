-- The four things jobtrail keeps (raw deliveries, the event log, jobs, the outbox), the
-- sinks' state, and the leadership lease of the replicas.
-- Delivery ids and event sequence numbers are given by the writer from `log_tail`, whose
-- one row stays locked by the transaction that moved it until its COMMIT
-- (store/postgres/writes.py): numbers in commit order, no gaps, so a reader of
-- "everything after N" never skips an event that a slower transaction commits later.

CREATE TABLE log_tail (
    deliveries bigint NOT NULL,
    events     bigint NOT NULL
);
INSERT INTO log_tail VALUES (0, 0);

CREATE TABLE deliveries (
    id          bigint      PRIMARY KEY,
    source      text        NOT NULL,
    provider    text        NOT NULL,
    job_id      text,
    received_at timestamptz NOT NULL,
    headers     jsonb       NOT NULL,
    body        bytea       NOT NULL,
    body_size   integer     NOT NULL,
    verdict     text        NOT NULL CHECK (verdict IN ('accepted', 'duplicate', 'rejected')),
    reason      text
);
CREATE INDEX deliveries_job ON deliveries (provider, job_id, id);

CREATE TABLE events (
    seq         bigint      PRIMARY KEY,
    provider    text        NOT NULL,
    job_id      text        NOT NULL,
    type        text        NOT NULL,
    source      text        NOT NULL,
    at          timestamptz NOT NULL,
    data        jsonb       NOT NULL,
    delivery_id bigint      REFERENCES deliveries (id),
    fingerprint text
);
CREATE INDEX events_job ON events (provider, job_id, seq);
CREATE UNIQUE INDEX events_fingerprint ON events (provider, job_id, fingerprint)
    WHERE fingerprint IS NOT NULL;

CREATE TABLE jobs (
    jid             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider        text        NOT NULL,
    job_id          text        NOT NULL,
    status          text        NOT NULL,
    progress        integer,
    result_urls     jsonb       NOT NULL,
    error           text,
    provider_status text,
    terminals       jsonb       NOT NULL,
    params          jsonb       NOT NULL,
    seen            jsonb       NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (provider, job_id)
);
CREATE INDEX jobs_status ON jobs (status, jid);
CREATE INDEX jobs_provider_status ON jobs (provider, status, jid);

CREATE TABLE outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key             text        NOT NULL UNIQUE,
    kind            text        NOT NULL,
    provider        text        NOT NULL,
    job_id          text        NOT NULL,
    sink            text        NOT NULL,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    lease_owner     text,
    last_error      text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX outbox_claim ON outbox (kind, status, next_attempt_at);
CREATE INDEX outbox_job ON outbox (provider, job_id);

CREATE TABLE sinks (
    name        text        PRIMARY KEY,
    disabled_at timestamptz,
    reason      text,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE leaders (
    name       text        PRIMARY KEY,
    owner      text        NOT NULL,
    expires_at timestamptz NOT NULL
);
