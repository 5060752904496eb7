-- Transactional outbox: an event is written in the same transaction as the
-- record it describes, so a broker outage can delay it but never lose it. A row
-- lives until RabbitMQ has confirmed the publish; then it is deleted.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    routing_key text NOT NULL,
    -- The event id: AMQP message-id, and the consumers' de-duplication key.
    message_id  text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_created_at_idx ON outbox (created_at);

-- Idempotency-Key replay: the first successful answer for (client, key) is kept
-- for 24 hours and returned to every retry with the same key.
CREATE TABLE idempotency_keys (
    client_id       text NOT NULL REFERENCES clients (id),
    key             text NOT NULL,
    -- SHA-256 of the request body: the same key with another body is refused.
    request_hash    text NOT NULL,
    response        jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
