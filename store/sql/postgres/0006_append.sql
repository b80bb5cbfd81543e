-- A batch's events appended to the log (store/postgres/writes.py, APPEND_AND_COMMIT):
-- the log's tail moved (its row stays locked until COMMIT: the log's one order), the
-- events inserted numbered from it, the log's NOTIFY sent, and where the numbers began
-- told twice: in a NOTICE, which the writer hears with the COMMIT's answer (no round trip
-- after it), and in a session setting, which it reads should the NOTICE not come (a
-- `client_min_messages` above notice, say).

CREATE FUNCTION jobtrail_append(how_many integer, writer text, written_at timestamptz, batch jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    after bigint;
BEGIN
    UPDATE log_tail SET events = events + how_many RETURNING events - how_many INTO after;
    IF after IS NULL THEN
        RAISE EXCEPTION 'the log''s tail is missing (table log_tail has no row): a damaged database';
    END IF;
    INSERT INTO events (seq, provider, job_id, type, source, at, data, delivery_id, fingerprint)
    SELECT after + t.n, t.provider, t.job_id, t.type, t.source, written_at, t.data, t.delivery_id, t.fingerprint
    FROM jsonb_to_recordset(batch) AS t (
        n bigint, provider text, job_id text, type text, source text, data jsonb, delivery_id bigint,
        fingerprint text
    );
    PERFORM set_config('jobtrail.appended_after', after::text, false);
    PERFORM pg_notify('jobtrail_log', (after + how_many)::text || ' ' || writer);
    RAISE NOTICE USING MESSAGE = 'jobtrail appended after ' || after;
END
$$;
