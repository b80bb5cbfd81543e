-- Leases carry their owner: an attempt is recorded only by the worker that still holds
-- the item's lease, and a worker renews and releases only its own leases.

ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
