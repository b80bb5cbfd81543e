-- Reads that stay flat with size: every listing filter is served by an index that gives
-- its rows in key order (a SQLite index ends with the rowid), so no listing sorts, and a
-- filter that matches few rows does not scan for them. Checked by EXPLAIN QUERY PLAN in
-- tests/integration/test_query_plans.py. Time filters need none: the listing reads the
-- key range the times allow (store/sql_reads.py, `_span`).

CREATE INDEX jobs_provider ON jobs (provider);
CREATE INDEX jobs_conflict ON jobs (jid) WHERE terminals LIKE '%,%';
CREATE INDEX outbox_status ON outbox (status);
CREATE INDEX outbox_sink ON outbox (sink);
CREATE INDEX outbox_lease ON outbox (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX deliveries_rejected ON deliveries (id) WHERE verdict = 'rejected';
