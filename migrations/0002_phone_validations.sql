-- Phone validations: one row per code requested. Status only moves forward
-- (new -> sent -> validated | failed, or new -> failed); every UPDATE that moves
-- it names the status it expects, so a race can never move it backwards.

CREATE TABLE phone_validations (
    id                  text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{24}$'),
    client_id           text NOT NULL REFERENCES clients (id),
    project_id          text NOT NULL REFERENCES projects (id),
    project_flow_id     text NOT NULL REFERENCES project_flows (id),
    status              text NOT NULL DEFAULT 'new'
                        CHECK (status IN ('new', 'sent', 'validated', 'failed')),
    country_code        text NOT NULL,
    -- National number, digits only, as the client sent it once punctuation is stripped.
    phone               text NOT NULL,
    phone_gateway       text NOT NULL CHECK (phone_gateway IN ('sms', 'whatsapp', 'none')),
    validation_method   text NOT NULL,
    type                text NOT NULL,
    -- bcrypt(HMAC-SHA256(pepper, id:code)); NULL until the dispatcher stores it.
    otp_hash            text,
    -- Digits of the code, fixed from the flow when the validation is created.
    otp_length          smallint NOT NULL CHECK (otp_length BETWEEN 4 AND 10),
    expires_at          timestamptz NOT NULL,
    name                text,
    phone_data          jsonb NOT NULL DEFAULT '{}',
    extra_params        jsonb,
    redirect_url        text,
    webhook_url         text,
    identity_url        text,
    requires_2fa        boolean NOT NULL DEFAULT false,
    ip_address          text,
    language            text NOT NULL DEFAULT 'en',
    attempts            integer NOT NULL DEFAULT 0,
    max_attempts        integer NOT NULL,
    provider_confirmation jsonb,
    failed_reason       text,
    validated_at        timestamptz,
    -- Dispatcher bookkeeping (never shown): who holds the send, and until when.
    dispatch_lease_until timestamptz,
    dispatch_attempts   integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Newest validation for (client, phone): the validate lookup, the resend
-- cooldown and the hourly cap all walk this index from its newest end.
CREATE INDEX phone_validations_phone_idx
    ON phone_validations (client_id, country_code, phone, created_at DESC);
-- Listing a client's validations, newest first (ids are time-ordered); the
-- list filters are selective enough to be applied on top of it.
CREATE INDEX phone_validations_client_idx ON phone_validations (client_id, id DESC);
CREATE INDEX phone_validations_flow_idx ON phone_validations (project_flow_id, id DESC);
