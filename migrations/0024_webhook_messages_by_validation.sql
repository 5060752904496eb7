-- The message log of one phone validation (docs/contract.md §13,
-- `GET /v2/webhook-messages?validation=ID`, which the console's timeline
-- reads): the events whose body's `object` is that validation. The body is
-- stored as POSTed (`payload`), so the validation's id is an expression of
-- it; this index finds a client's messages of one validation, newest
-- first, without scanning the client's log. `fraud_guard_blocked` events
-- (whose `object` is a block, without `_id`) are left out of it.
CREATE INDEX webhook_messages_validation_idx
    ON webhook_messages (client_id, (payload -> 'object' ->> '_id'), occurred_at DESC, event_id DESC)
    WHERE payload -> 'object' ->> '_id' IS NOT NULL;
