-- The webhook worker's claim of due endpoint deliveries (docs/contract.md
-- §13) walks the endpoints that may take work now (enabled, not paused,
-- with room in their rate window and their in-flight limit) and takes each
-- one's oldest due rows. This index makes that a short range scan per
-- endpoint, so a paused, saturated or rate-limited endpoint's backlog is
-- never scanned while it waits.
CREATE INDEX webhook_endpoint_deliveries_endpoint_due_idx
    ON webhook_endpoint_deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';
