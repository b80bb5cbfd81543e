-- The dispatcher: sinks that were disabled (a 410 from a notification endpoint), and an
-- index for claiming due outbox work of one kind, which replaces the (status, due) one.

CREATE TABLE sinks (
    name        TEXT PRIMARY KEY,
    disabled_at TEXT,
    reason      TEXT,
    updated_at  TEXT NOT NULL
);

CREATE INDEX outbox_claim ON outbox (kind, status, next_attempt_at);
DROP INDEX outbox_due;
