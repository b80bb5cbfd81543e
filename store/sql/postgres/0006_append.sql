-- A batch's writes and its append to the log, in the message that commits them
-- (store/postgres/writes.py, WRITE). The rows come as JSON: the deliveries (in order,
-- bodies in base64), jobs, outbox work and events (numbered from 1, each with its
-- delivery's place among the batch's deliveries).
--
-- With `job_locks`, the batch was planned on jobs read without locks (`expected`: each
-- job's row version, `xmin`, or none, and whether retention had removed it): the jobs'
-- locks are taken here, and if any of them changed since, nothing is written and the
-- error is JT409 (the writer plans again, under the locks). Without, the caller holds
-- the locks already, taken before it read the jobs.
--
-- The deliveries, jobs and outbox work are written first; then the log's tail is moved
-- (its row stays locked until COMMIT: the log's one order) and the events inserted
-- numbered from it, so the tail is held only for the append and the COMMIT. The NOTIFYs
-- are sent, and the writer is told the deliveries' ids and where the numbers began
-- twice: in a NOTICE, which it hears with the COMMIT's answer (no round trip after it),
-- and in session settings, which it reads should the NOTICE not come.

CREATE FUNCTION jobtrail_write(
    lock_class integer, job_locks integer[], expected json, delivery_rows json, job_rows json, outbox_rows json,
    event_rows json, how_many integer, written_at timestamptz,
    now timestamptz, outbox_news boolean, writer text
) RETURNS void LANGUAGE plpgsql
-- Its statements planned once per connection: the replicas' connections plan every
-- statement each time (store.py), which inside this function was a sixth of
-- PostgreSQL's CPU per batch (perf); these inserts and this update have one plan only.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    changed bigint;
    ids bigint[];
    after bigint;
BEGIN
    IF job_locks IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(lock_class, h) FROM unnest(job_locks) AS h;
        -- EXECUTE: planned each time for what `jobs` holds now. This function's other
        -- statements keep their plans (the SET above), which a query that may look a
        -- job up through the wrong index must not (store.py, plan_cache_mode).
        -- Each job looked up by its key (LIMIT 1 keeps each lookup its own: joined whole,
        -- the planner hashed all of `jobs` while its statistics still called it small).
        EXECUTE $q$
            SELECT count(*) FROM json_to_recordset($1) AS x (provider text, job_id text, version text, removed boolean)
            LEFT JOIN LATERAL (
                SELECT xmin::text AS version FROM jobs WHERE jobs.provider = x.provider AND jobs.job_id = x.job_id
                LIMIT 1
            ) j ON true
            LEFT JOIN LATERAL (
                SELECT true AS removed FROM removed_jobs r WHERE r.provider = x.provider AND r.job_id = x.job_id
                LIMIT 1
            ) r ON true
            WHERE j.version IS DISTINCT FROM x.version OR x.removed <> COALESCE(r.removed, false)
        $q$ INTO changed USING expected;
        IF changed > 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'JT409', MESSAGE = 'a job changed since the batch read it';
        END IF;
    END IF;
    WITH delivered AS (
        INSERT INTO deliveries (source, provider, job_id, received_at, headers, body, body_size, verdict, reason)
        SELECT d.source, d.provider, d.job_id, d.received_at, d.headers, decode(d.body, 'base64'), d.body_size,
               d.verdict, d.reason
        FROM json_to_recordset(delivery_rows) AS d (
            i integer, source text, provider text, job_id text, received_at timestamptz, headers jsonb,
            body text, body_size integer, verdict text, reason text
        )
        ORDER BY d.i
        RETURNING id
    )
    SELECT COALESCE(array_agg(id ORDER BY id), '{}') INTO ids FROM delivered;

    INSERT INTO jobs (provider, job_id, status, progress, result_urls, error, provider_status, terminals,
                      params, seen, created_at, updated_at)
    SELECT j.provider, j.job_id, j.status, j.progress, j.result_urls, j.error, j.provider_status, j.terminals,
           j.params, j.seen, j.created_at, j.updated_at
    FROM json_to_recordset(job_rows) AS j (
        provider text, job_id text, status text, progress integer, result_urls jsonb, error text,
        provider_status text, terminals jsonb, params jsonb, seen jsonb, created_at timestamptz,
        updated_at timestamptz
    )
    ON CONFLICT (provider, job_id) DO UPDATE SET status = excluded.status, progress = excluded.progress,
        result_urls = excluded.result_urls, error = excluded.error,
        provider_status = excluded.provider_status, terminals = excluded.terminals, params = excluded.params,
        seen = excluded.seen, updated_at = excluded.updated_at;

    INSERT INTO outbox (key, kind, provider, job_id, sink, payload, status, next_attempt_at, created_at,
                        updated_at)
    SELECT o.key, o.kind, o.provider, o.job_id, o.sink, o.payload, o.status, now, now, now
    FROM json_to_recordset(outbox_rows) AS o (
        key text, kind text, provider text, job_id text, sink text, payload jsonb, status text
    )
    ON CONFLICT (key) DO NOTHING;

    IF how_many > 0 THEN
        UPDATE log_tail SET events = events + how_many RETURNING events - how_many INTO after;
        IF after IS NULL THEN
            RAISE EXCEPTION 'the log''s tail is missing (table log_tail has no row): a damaged database';
        END IF;
        INSERT INTO events (seq, provider, job_id, type, source, at, data, delivery_id, fingerprint)
        SELECT after + e.n, e.provider, e.job_id, e.type, e.source, written_at, e.data, ids[e.delivery + 1],
               e.fingerprint
        FROM json_to_recordset(event_rows) AS e (
            n bigint, provider text, job_id text, type text, source text, data jsonb, delivery integer,
            fingerprint text
        );
        PERFORM pg_notify('jobtrail_log', (after + how_many)::text || ' ' || writer);
    END IF;
    IF outbox_news THEN
        PERFORM pg_notify('jobtrail_outbox', writer);
    END IF;
    PERFORM set_config('jobtrail.appended_after', COALESCE(after::text, ''), false);
    PERFORM set_config('jobtrail.delivered', ids::text, false);
    RAISE NOTICE USING MESSAGE = 'jobtrail wrote ' || ids::text || ' after ' || COALESCE(after::text, '-');
END
$$;
