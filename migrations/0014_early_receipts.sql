-- Receipts that arrive before their send is recorded (docs/contract.md §11). The
-- dispatcher records sends in batches, after the provider answered; a fast
-- provider may report `undelivered` before that, and the report must not be
-- lost (its failover is the point of it). The API keeps such a receipt here,
-- keyed by provider and message id (a provider only ever reports on its own
-- messages), and applies it once the send is recorded: the dispatcher probes
-- this table once per batch of recorded sends, the API looks again after
-- keeping one, and a periodic sweep (any dispatcher instance, small batches)
-- applies what a crash in between left and purges receipts older than
-- 10 minutes whose message was never recorded.
CREATE TABLE early_receipts (
    provider    text NOT NULL,
    message_id  text NOT NULL,
    -- `deliveryStatus` spelling and its rank (shared::domain::delivery): a
    -- later report replaces a kept one only when it goes further.
    status      text NOT NULL,
    rank        smallint NOT NULL,
    error_code  text,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, message_id)
);
-- The sweep's purge, oldest first.
CREATE INDEX early_receipts_received_idx ON early_receipts (received_at);
