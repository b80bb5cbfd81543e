-- Whole-job retention (store/retention.py): a removed job leaves its key here, so that a
-- late report about it is refused instead of starting the job again. `rid` rises with
-- each removal, and the writer takes its top as part of where the log ends: a removal,
-- made on a connection of its own, makes the writer plan again from the file.

CREATE TABLE removed_jobs (
    rid        INTEGER PRIMARY KEY,
    provider   TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    removed_at TEXT NOT NULL,
    UNIQUE (provider, job_id)
);
