-- Smaller events (issue 20). An event names its job by the job's row id (`jid`) instead
-- of repeating (provider, job_id) in its row and in both of its indexes: about 48 bytes
-- an event less with 12-character job ids, more with longer ones. Every event's job has a
-- row (a job's events and its row are written together and removed together): an event
-- without one stops this migration (jid NOT NULL), and it is rolled back.
--
-- The log has no foreign key to deliveries any more: retention deletes a delivery past
-- its window, and the events it brought keep its number, source and time (as on
-- PostgreSQL since its migration 3).
--
-- `events` stays, as a view with the columns it had, for reading by hand; jobtrail's own
-- statements name `event_log` (store/sqlite/reads.py, writes.py).

CREATE TABLE event_log (
    seq         INTEGER PRIMARY KEY,
    jid         INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    at          TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    delivery_id INTEGER,
    fingerprint TEXT
);
INSERT INTO event_log (seq, jid, type, source, at, data, delivery_id, fingerprint)
    SELECT e.seq, j.jid, e.type, e.source, e.at, e.data, e.delivery_id, e.fingerprint
    FROM events e LEFT JOIN jobs j ON j.provider = e.provider AND j.job_id = e.job_id
    ORDER BY e.seq;
DROP TABLE events;
CREATE INDEX event_log_job ON event_log (jid, seq);
CREATE UNIQUE INDEX event_log_fingerprint ON event_log (jid, fingerprint) WHERE fingerprint IS NOT NULL;
CREATE VIEW events AS
    SELECT e.seq, j.provider, j.job_id, e.type, e.source, e.at, e.data, e.delivery_id, e.fingerprint
    FROM event_log e JOIN jobs j ON j.jid = e.jid;

-- Claims look for pending work only: done and dead items (most of a long-lived outbox)
-- need no entry in the claim index.
DROP INDEX outbox_claim;
CREATE INDEX outbox_claim ON outbox (kind, next_attempt_at) WHERE status = 'pending';
