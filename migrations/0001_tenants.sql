-- Tenants and their configuration: clients own projects, projects own flows.
-- Ids are 24-hex ObjectId strings minted by the application (time-prefixed, so
-- `ORDER BY id` is creation order and no sequence is shared between instances).

CREATE TABLE clients (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{24}$'),
    name        text NOT NULL,
    -- Standard Webhooks signing secret (`whsec_` + base64). The previous one keeps
    -- signing alongside the new one until `previous_webhook_secret_expires_at`,
    -- so receivers can roll over without dropping events.
    webhook_secret                      text NOT NULL,
    previous_webhook_secret             text,
    previous_webhook_secret_expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{24}$'),
    client_id   text NOT NULL REFERENCES clients (id),
    name        text NOT NULL,
    demo        boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Listing a client's projects, newest first.
CREATE INDEX projects_client_id_idx ON projects (client_id, id DESC);

CREATE TABLE project_flows (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{24}$'),
    client_id   text NOT NULL REFERENCES clients (id),
    project_id  text NOT NULL REFERENCES projects (id),
    type        text NOT NULL CHECK (type IN ('login', 'onboarding')),
    -- The flow's phone settings as the API shows them (camelCase keys, defaults
    -- filled in): read whole on every create, never queried field by field.
    phone       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX project_flows_client_id_idx ON project_flows (client_id, id DESC);
