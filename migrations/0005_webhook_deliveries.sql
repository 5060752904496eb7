-- Webhook delivery attempts (docs/contract.md §8): one row per attempt to deliver a
-- `phone_validation.*` event to a client's URL. The row is written before the
-- request (outcome 'in_flight': the attempt is claimed) and completed after it,
-- so it is both the client-visible record and the worker's de-duplication key.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    -- The event id: the `webhook-id` header, stable across attempts.
    event_id        text NOT NULL,
    event_type      text NOT NULL,
    validation_id   text NOT NULL REFERENCES phone_validations (id),
    -- The validation's client, copied for tenant-isolated reads. No foreign key:
    -- the validation's own key implies it, and a key here would have every
    -- concurrent insert share-lock the same client row.
    client_id       text NOT NULL,
    url             text NOT NULL,
    -- A dead-lettered event replayed by `otpctl dlq replay` starts a new round
    -- with a fresh schedule; `attempt` counts from 1 within the round.
    round           integer NOT NULL DEFAULT 0,
    attempt         integer NOT NULL CHECK (attempt >= 1),
    attempted_at    timestamptz NOT NULL DEFAULT now(),
    -- NULL when no HTTP answer came (timeout, connection error, refused URL).
    status_code     integer,
    latency_ms      integer,
    error           text,
    -- When the next attempt is due (outcome 'retrying').
    next_attempt_at timestamptz,
    outcome         text NOT NULL CHECK (outcome IN (
                        'in_flight',      -- claimed, request under way
                        'delivered',      -- 2xx
                        'retrying',       -- failed; the next attempt is queued
                        'gone',           -- 410: the receiver asked us to stop
                        'refused',        -- the URL is not one we may call (SSRF guard)
                        'dead_lettered',  -- failed and the schedule is used up
                        'unscheduled'     -- failed, but the follow-up could not be queued yet
                    ))
)
-- Every row is updated once, right after its insert, in columns no index
-- covers: room on the page keeps that update HOT (no new index entries).
WITH (fillfactor = 70);

-- One claim per (event, round, attempt): a redelivered message, or a second
-- worker holding a duplicate, finds the attempt taken and does not POST again.
-- It also answers "was this event delivered?" (a few rows per event at most).
CREATE UNIQUE INDEX webhook_deliveries_attempt_key
    ON webhook_deliveries (event_id, round, attempt);
-- The client's read API: a validation's deliveries, newest first.
CREATE INDEX webhook_deliveries_validation_idx
    ON webhook_deliveries (client_id, validation_id, id DESC);
