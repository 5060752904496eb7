-- Delivery you can see (docs/contract.md §11). Providers report a message's fate by
-- its id (Twilio's MessageSid, Meta's wamid, Vonage's message-id): each
-- message a send produced is kept here, so a status callback finds its
-- validation with one primary-key lookup, whichever send it is about, without
-- an index on phone_validations (whose updates stay HOT).
CREATE TABLE provider_messages (
    message_id    text PRIMARY KEY,
    validation_id text NOT NULL REFERENCES phone_validations (id),
    provider      text NOT NULL,
    sent_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_messages_validation_idx ON provider_messages (validation_id);

-- A send repeated because the first was reported undelivered: at most one
-- per validation and cause. The API inserts the row when the report comes
-- (only the first report of a cause queues a failover); the dispatcher
-- claims it with a lease, like a first send, and records the new message.
CREATE TABLE send_failovers (
    validation_id  text NOT NULL REFERENCES phone_validations (id),
    -- 'sms_undelivered' (the next SMS provider) or 'whatsapp_failed' (SMS).
    cause          text NOT NULL,
    -- The provider whose message failed: the failover avoids it.
    failed_provider text NOT NULL,
    requested_at   timestamptz NOT NULL DEFAULT now(),
    lease_holder   text,
    lease_until    timestamptz,
    sent_at        timestamptz,
    provider       text,
    message_id     text,
    PRIMARY KEY (validation_id, cause)
);
