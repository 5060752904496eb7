-- Webhook endpoints for their consumers (docs/contract.md §13): a client's
-- endpoints, the messages (events) sent to them, one delivery per (event,
-- endpoint) with its own schedule, and every attempt. Deliveries wait in
-- PostgreSQL, not in the broker: a stalled endpoint's backlog is rows, and
-- any webhook worker claims due rows with `FOR UPDATE SKIP LOCKED`.

CREATE TABLE webhook_endpoints (
    id                  text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{24}$'),
    client_id           text NOT NULL REFERENCES clients (id),
    url                 text NOT NULL,
    description         text,
    -- NULL: every event type.
    event_types         text[],
    -- Only this project's events when set.
    project_id          text REFERENCES projects (id),
    rate_limit_per_second integer CHECK (rate_limit_per_second > 0),
    disabled            boolean NOT NULL DEFAULT false,
    -- 'failing' (auto-disabled) or 'manual'.
    disabled_reason     text,
    -- Sealed like clients' secrets (shared/src/webhook_secrets.rs, the
    -- endpoint id as associated data).
    secret              text NOT NULL,
    -- After a rotation the old secret signs beside the new one until then.
    previous_secret     text,
    previous_secret_expires_at timestamptz,
    -- The first failed attempt since the last 2xx (NULL while healthy): an
    -- endpoint failing for WEBHOOK_DISABLE_AFTER_HOURS is disabled.
    failing_since       timestamptz,
    last_success_at     timestamptz,
    -- A stalled endpoint (timeouts, refused connections): its deliveries are
    -- not claimed before this instant, so it costs nothing while it rests.
    paused_until        timestamptz,
    -- The shared rate limit (rateLimitPerSecond across all workers): the
    -- current one-second window and how many deliveries it has granted.
    rate_window         timestamptz,
    rate_used           integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_client_idx ON webhook_endpoints (client_id, id DESC);

-- One row per event that had at least one endpoint to go to: the body as
-- POSTed (`payload`), the same at every endpoint and on every retry.
CREATE TABLE webhook_messages (
    event_id    text PRIMARY KEY,
    client_id   text NOT NULL REFERENCES clients (id),
    project_id  text,
    event_type  text NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- The message log, newest first; and the retention purge.
CREATE INDEX webhook_messages_client_idx ON webhook_messages (client_id, occurred_at DESC, event_id DESC);
CREATE INDEX webhook_messages_created_idx ON webhook_messages (created_at);

CREATE TABLE webhook_endpoint_deliveries (
    event_id        text NOT NULL REFERENCES webhook_messages (event_id) ON DELETE CASCADE,
    endpoint_id     text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    client_id       text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    -- Attempts made in this round (a resend or a recovery starts a new round).
    attempts        integer NOT NULL DEFAULT 0,
    -- pending: when the next attempt is due (a claim moves it past the
    -- attempt's deadline, so a crashed worker's claim comes due again).
    next_attempt_at timestamptz,
    last_attempt_at timestamptz,
    last_status_code integer,
    PRIMARY KEY (event_id, endpoint_id)
) WITH (fillfactor = 80);
-- What is due, for the workers' claims.
CREATE INDEX webhook_endpoint_deliveries_due_idx
    ON webhook_endpoint_deliveries (next_attempt_at) WHERE status = 'pending';
-- An endpoint's deliveries: recovery, the log's endpoint filter, pausing.
CREATE INDEX webhook_endpoint_deliveries_endpoint_idx
    ON webhook_endpoint_deliveries (endpoint_id, status);

CREATE TABLE webhook_endpoint_attempts (
    id              bigserial PRIMARY KEY,
    event_id        text NOT NULL,
    endpoint_id     text NOT NULL,
    client_id       text NOT NULL,
    url             text NOT NULL,
    attempted_at    timestamptz NOT NULL DEFAULT now(),
    -- NULL when no HTTP answer came (timeout, connection error, refused URL).
    status_code     integer,
    latency_ms      integer,
    error           text,
    -- The first KiB of the answer's body.
    response_body   text
);
CREATE INDEX webhook_endpoint_attempts_event_idx ON webhook_endpoint_attempts (event_id, id);
CREATE INDEX webhook_endpoint_attempts_time_idx ON webhook_endpoint_attempts (attempted_at);

-- The expiry sweep: open validations by when they expire.
CREATE INDEX phone_validations_open_expiry_idx
    ON phone_validations (expires_at) WHERE status IN ('new', 'sent');
