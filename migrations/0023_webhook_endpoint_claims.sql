-- The webhook worker's claim of due endpoint deliveries (docs/contract.md
-- §13) walks the endpoints that may take work now (enabled, not paused,
-- with room in their rate window and their in-flight limit) and takes each
-- one's oldest due rows. This index makes that a short range scan per
-- endpoint, so a paused, saturated or rate-limited endpoint's backlog is
-- never scanned while it waits.
CREATE INDEX webhook_endpoint_deliveries_endpoint_due_idx
    ON webhook_endpoint_deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';

-- 0021's index of every due row by time alone: with it the planner walked
-- the due rows in time order for each endpoint, filtering on the endpoint,
-- so one paused endpoint's backlog was scanned by every claim (measured:
-- 200,000 due rows of a paused endpoint beside 10 of a healthy one, a
-- claim took 137-175 ms with it and 2.3 ms without). Nothing else reads it,
-- and each delivery's updates maintain one index fewer.
DROP INDEX webhook_endpoint_deliveries_due_idx;
