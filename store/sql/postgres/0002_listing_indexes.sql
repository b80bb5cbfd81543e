-- Reads that stay flat with size: every listing filter is served by an index in key
-- order, so no listing sorts, and a filter that matches few rows does not scan for them.
-- Time filters need none: the listing reads the key range the times allow
-- (store/sql_reads.py, `_span`).

CREATE INDEX jobs_provider ON jobs (provider, jid);
CREATE INDEX jobs_conflict ON jobs (jid) WHERE jsonb_array_length(terminals) > 1;
CREATE INDEX outbox_status ON outbox (status, id);
CREATE INDEX outbox_sink ON outbox (sink, id);
CREATE INDEX outbox_lease ON outbox (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX deliveries_rejected ON deliveries (id) WHERE verdict = 'rejected';
