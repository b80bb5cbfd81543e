-- A job's polls (store/base.py, `Polls`): the poller keeps an answer that says something
-- new as a delivery, and only counts the others, here: how many answers, when the last
-- came, a digest of its body. Intake's upsert of a job leaves these columns alone.

ALTER TABLE jobs ADD COLUMN polls integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN polled_at timestamptz;
ALTER TABLE jobs ADD COLUMN poll_digest text;
