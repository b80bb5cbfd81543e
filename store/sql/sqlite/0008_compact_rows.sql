-- Smaller events and jobs (issue 20). An event's time as an integer, microseconds since 1970 in
-- UTC (8 bytes), where the text `2026-12-06T14:14:37.104327+00:00` took 32: about 250
-- bytes a job of ten events. The conversion keeps each time to the microsecond: whole
-- seconds from strftime (which applies the offset) on the text without its fraction
-- (strftime would round a fraction to milliseconds, .999999 up to the next second), and
-- the fraction from its `digits`, padded to six (jobtrail wrote six, or none when zero;
-- three convert too).
--
-- The log is written again (new pages, filled in order), its indexes rebuilt, and the
-- `events` view for reading by hand shows the time as ISO text, as the table did.
--
-- A job's `seen` (the fingerprints of its events, for telling a duplicate report) goes:
-- the log's unique index (jid, fingerprint) holds the same fingerprints, and jobtrail
-- reads them from there with the job (store/sqlite/reads.py, SEEN): about 150 bytes a
-- job. The jobs table is written again without it, to leave no page half empty.
--
-- The outbox is written again too: retention before this version deleted delivered
-- notifications from between the downloads, and left their pages half full (retention
-- now writes what stays in its span again: store/sqlite/store.py, `_repack`). The pages
-- the old tables leave free are given back after the migration (schema.py).

DROP VIEW events;
CREATE TABLE event_log_new (
    seq         INTEGER PRIMARY KEY,
    jid         INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    data        TEXT    NOT NULL,
    delivery_id INTEGER,
    fingerprint TEXT
);
INSERT INTO event_log_new (seq, jid, type, source, at, data, delivery_id, fingerprint)
    SELECT seq, jid, type, source,
           CAST(strftime('%s', substr(at, 1, 19) || substr(at, 20 + iif(digits, 1 + digits, 0))) AS INTEGER)
               * 1000000 + CAST(substr(substr(at, 21, digits) || '000000', 1, 6) AS INTEGER),
           data, delivery_id, fingerprint
    FROM (
        SELECT *, iif(substr(at, 20, 1) = '.',
                      length(substr(at, 21, 6)) - length(ltrim(substr(at, 21, 6), '0123456789')), 0) AS digits
        FROM event_log
    ) ORDER BY seq;
DROP TABLE event_log;
ALTER TABLE event_log_new RENAME TO event_log;
CREATE INDEX event_log_job ON event_log (jid, seq);
CREATE UNIQUE INDEX event_log_fingerprint ON event_log (jid, fingerprint) WHERE fingerprint IS NOT NULL;
CREATE TABLE jobs_new (
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
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    polls           INTEGER NOT NULL DEFAULT 0,
    polled_at       TEXT,
    poll_digest     TEXT,
    UNIQUE (provider, job_id)
);
INSERT INTO jobs_new
    SELECT jid, provider, job_id, status, progress, result_urls, error, provider_status, terminals, params,
           created_at, updated_at, polls, polled_at, poll_digest
    FROM jobs ORDER BY jid;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_status ON jobs (status, jid);
CREATE INDEX jobs_provider_status ON jobs (provider, status, jid);
CREATE INDEX jobs_provider ON jobs (provider);
CREATE INDEX jobs_conflict ON jobs (jid) WHERE terminals LIKE '%,%';
CREATE TABLE outbox_new (
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
    updated_at      TEXT    NOT NULL,
    lease_owner     TEXT
);
INSERT INTO outbox_new
    SELECT id, key, kind, provider, job_id, sink, payload, status, attempts, next_attempt_at, lease_until,
           last_error, created_at, updated_at, lease_owner
    FROM outbox ORDER BY id;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_job ON outbox (provider, job_id);
CREATE INDEX outbox_status ON outbox (status);
CREATE INDEX outbox_sink ON outbox (sink);
CREATE INDEX outbox_lease ON outbox (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX outbox_claim ON outbox (kind, next_attempt_at) WHERE status = 'pending';

CREATE VIEW events AS
    SELECT e.seq, j.provider, j.job_id, e.type, e.source,
           strftime('%Y-%m-%dT%H:%M:%S', e.at / 1000000, 'unixepoch') || printf('.%06d+00:00', e.at % 1000000) AS at,
           e.data, e.delivery_id, e.fingerprint
    FROM event_log e JOIN jobs j ON j.jid = e.jid;
