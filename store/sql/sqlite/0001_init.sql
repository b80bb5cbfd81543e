-- The four things jobtrail keeps: raw deliveries, the event log, jobs, the outbox.
-- Times are ISO 8601 strings in UTC; JSON columns are TEXT.

CREATE TABLE deliveries (
    id          INTEGER PRIMARY KEY,
    source      TEXT    NOT NULL,
    provider    TEXT    NOT NULL,
    job_id      TEXT,
    received_at TEXT    NOT NULL,
    headers     TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    body_size   INTEGER NOT NULL,
    verdict     TEXT    NOT NULL CHECK (verdict IN ('accepted', 'duplicate', 'rejected')),
    reason      TEXT
);
CREATE INDEX deliveries_job ON deliveries (provider, job_id, id);

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    provider    TEXT    NOT NULL,
    job_id      TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    at          TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    delivery_id INTEGER REFERENCES deliveries (id),
    fingerprint TEXT
);
CREATE INDEX events_job ON events (provider, job_id, seq);
CREATE UNIQUE INDEX events_fingerprint ON events (provider, job_id, fingerprint)
    WHERE fingerprint IS NOT NULL;

CREATE TABLE jobs (
    jid             INTEGER PRIMARY KEY,
    provider        TEXT    NOT NULL,
    job_id          TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    progress        INTEGER,
    result_urls     TEXT    NOT NULL,
    error           TEXT,
    provider_status TEXT,
    terminals       TEXT    NOT NULL,
    params          TEXT    NOT NULL,
    seen            TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    UNIQUE (provider, job_id)
);
CREATE INDEX jobs_status ON jobs (status, jid);
CREATE INDEX jobs_provider_status ON jobs (provider, status, jid);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    key             TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    job_id          TEXT    NOT NULL,
    sink            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    lease_until     TEXT,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_job ON outbox (provider, job_id);
