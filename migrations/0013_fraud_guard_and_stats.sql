-- The fraud guard, rate limits, the safe list and conversion stats
-- (docs/contract.md §9, §10).
--
-- Counting: every statement that inserts or changes phone validations
-- appends what it changed to `validation_stats_deltas` (a statement-level
-- trigger, so every write path counts the same way, and append-only, so a
-- burst of writers never waits on a shared counter row). The API folds the
-- deltas into the hourly `validation_stats` rollup and the per-5-second
-- `fraud_counters` the guard judges, under an advisory lock (one instance
-- at a time); readers add the deltas not folded yet.

-- ISO 3166-1 alpha-2 of the number's region (`+1` is many countries).
ALTER TABLE phone_validations ADD COLUMN region text;

CREATE TABLE validation_stats_deltas (
    id              bigserial PRIMARY KEY,
    client_id       text NOT NULL,
    project_id      text NOT NULL,
    project_flow_id text NOT NULL,
    -- The validation's creation, to the second: stats count by creation.
    at              timestamptz NOT NULL,
    region          text NOT NULL,
    country_code    text NOT NULL,
    -- Calling code and the first 3 national digits: `+507626`.
    prefix          text NOT NULL,
    channel         text NOT NULL,
    -- '' until a provider took the message.
    provider        text NOT NULL,
    created         bigint NOT NULL DEFAULT 0,
    sent            bigint NOT NULL DEFAULT 0,
    delivered       bigint NOT NULL DEFAULT 0,
    validated       bigint NOT NULL DEFAULT 0,
    failed          bigint NOT NULL DEFAULT 0,
    -- Creates the guard refused (nothing else records them).
    blocked         bigint NOT NULL DEFAULT 0,
    -- For validated ones: the bucket of seconds from creation to validation
    -- (`width_bucket` over `validation_seconds_bounds()`).
    ttv_bucket      smallint
);
CREATE INDEX validation_stats_deltas_client_idx ON validation_stats_deltas (client_id, at);
-- Folding deletes every row every few seconds: vacuum it by row count, not
-- by share of the table, so readers never wade through dead rows.
ALTER TABLE validation_stats_deltas SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,
                                         autovacuum_vacuum_cost_delay = 0);

CREATE TABLE validation_stats (
    client_id       text NOT NULL,
    hour            timestamptz NOT NULL,
    project_id      text NOT NULL,
    project_flow_id text NOT NULL,
    region          text NOT NULL,
    prefix          text NOT NULL,
    channel         text NOT NULL,
    provider        text NOT NULL,
    created         bigint NOT NULL DEFAULT 0,
    sent            bigint NOT NULL DEFAULT 0,
    delivered       bigint NOT NULL DEFAULT 0,
    validated       bigint NOT NULL DEFAULT 0,
    failed          bigint NOT NULL DEFAULT 0,
    blocked         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, hour, project_id, project_flow_id, region, prefix, channel, provider)
);

-- Validated codes per bucket of seconds to validate (for the median).
CREATE TABLE validation_stats_ttv (
    client_id       text NOT NULL,
    hour            timestamptz NOT NULL,
    project_id      text NOT NULL,
    project_flow_id text NOT NULL,
    region          text NOT NULL,
    prefix          text NOT NULL,
    channel         text NOT NULL,
    provider        text NOT NULL,
    bucket          smallint NOT NULL,
    validated       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, hour, project_id, project_flow_id, region, prefix, channel, provider, bucket)
);

-- The guard's window: sends (by a real provider) and validations per
-- client, flow, prefix and 5 seconds of creation; pruned past the window.
CREATE TABLE fraud_counters (
    client_id       text NOT NULL,
    project_flow_id text NOT NULL,
    country_code    text NOT NULL,
    prefix          text NOT NULL,
    bucket          timestamptz NOT NULL,
    sent            bigint NOT NULL DEFAULT 0,
    validated       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, bucket, project_flow_id, prefix)
);

CREATE TABLE fraud_blocks (
    id              text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{24}$'),
    client_id       text NOT NULL REFERENCES clients (id),
    -- `+507626`, or a whole calling code (`+507`) for an attack spread thin.
    prefix          text NOT NULL,
    -- The flow whose traffic set it off (its webhookUrl hears of it).
    project_flow_id text NOT NULL,
    reason          text NOT NULL,
    sent            bigint NOT NULL,
    validated       bigint NOT NULL,
    blocked_at      timestamptz NOT NULL DEFAULT now(),
    until           timestamptz NOT NULL,
    lifted_at       timestamptz
);
CREATE INDEX fraud_blocks_active_idx ON fraud_blocks (client_id, prefix, until) WHERE lifted_at IS NULL;

CREATE TABLE safe_list (
    id              text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{24}$'),
    client_id       text NOT NULL REFERENCES clients (id),
    country_code    text NOT NULL,
    -- Canonical national digits, as phone_validations keeps them.
    phone           text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (client_id, country_code, phone)
);

-- Fixed windows of `rateLimits`: `key` names the limit and its value
-- (`ip:m:203.0.113.7`, `day`); `lim` is the limit the window was counted
-- against. Pruned once a window is over.
CREATE TABLE rate_limit_windows (
    project_flow_id text NOT NULL,
    key             text NOT NULL,
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    count           integer NOT NULL,
    lim             integer NOT NULL,
    PRIMARY KEY (project_flow_id, key, window_start)
);
CREATE INDEX rate_limit_windows_end_idx ON rate_limit_windows (window_end);

-- Seconds from creation to validation: the median is read off these buckets.
CREATE FUNCTION validation_seconds_bounds() RETURNS float8[] LANGUAGE sql IMMUTABLE AS
$$ SELECT ARRAY[5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1800, 3600, 7200, 86400]::float8[] $$;

-- Appends what a statement changed: each changed row's contribution as it
-- is now, minus its contribution as it was.
CREATE FUNCTION validation_stats_append() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO validation_stats_deltas (client_id, project_id, project_flow_id, at, region, country_code,
               prefix, channel, provider, created, sent, delivered, validated, failed, ttv_bucket)
        SELECT client_id, project_id, project_flow_id, date_trunc('second', created_at), coalesce(region, ''),
               country_code, country_code || left(phone, 3), phone_gateway,
               coalesce(provider_confirmation->>'provider', ''), count(*),
               count(*) FILTER (WHERE provider_confirmation->>'sent' = 'true' OR status IN ('sent', 'validated')),
               count(*) FILTER (WHERE provider_confirmation->>'deliveryStatus' IN ('delivered', 'read')),
               count(*) FILTER (WHERE status = 'validated'), count(*) FILTER (WHERE status = 'failed'),
               CASE WHEN status = 'validated' THEN width_bucket(
                   extract(epoch FROM validated_at - created_at)::float8, validation_seconds_bounds()) END
          FROM new_rows
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 15;
        RETURN NULL;
    END IF;
    INSERT INTO validation_stats_deltas (client_id, project_id, project_flow_id, at, region, country_code,
           prefix, channel, provider, created, sent, delivered, validated, failed, ttv_bucket)
    SELECT client_id, project_id, project_flow_id, date_trunc('second', created_at), coalesce(region, ''),
           country_code, country_code || left(phone, 3), phone_gateway,
           coalesce(provider_confirmation->>'provider', ''), sum(sign),
           sum(CASE WHEN provider_confirmation->>'sent' = 'true' OR status IN ('sent', 'validated') THEN sign ELSE 0 END),
           sum(CASE WHEN provider_confirmation->>'deliveryStatus' IN ('delivered', 'read') THEN sign ELSE 0 END),
           sum(CASE WHEN status = 'validated' THEN sign ELSE 0 END),
           sum(CASE WHEN status = 'failed' THEN sign ELSE 0 END),
           CASE WHEN status = 'validated' THEN width_bucket(
               extract(epoch FROM validated_at - created_at)::float8, validation_seconds_bounds()) END
      FROM (
            SELECT 1 AS sign, n.* FROM new_rows n JOIN old_rows o USING (id)
             WHERE n.status IS DISTINCT FROM o.status
                OR n.provider_confirmation->>'sent' IS DISTINCT FROM o.provider_confirmation->>'sent'
                OR n.provider_confirmation->>'provider' IS DISTINCT FROM o.provider_confirmation->>'provider'
                OR n.provider_confirmation->>'deliveryStatus' IS DISTINCT FROM o.provider_confirmation->>'deliveryStatus'
            UNION ALL
            SELECT -1 AS sign, o.* FROM old_rows o JOIN new_rows n USING (id)
             WHERE n.status IS DISTINCT FROM o.status
                OR n.provider_confirmation->>'sent' IS DISTINCT FROM o.provider_confirmation->>'sent'
                OR n.provider_confirmation->>'provider' IS DISTINCT FROM o.provider_confirmation->>'provider'
                OR n.provider_confirmation->>'deliveryStatus' IS DISTINCT FROM o.provider_confirmation->>'deliveryStatus'
           ) AS changed
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 15
    HAVING sum(sign) <> 0
        OR sum(CASE WHEN provider_confirmation->>'sent' = 'true' OR status IN ('sent', 'validated') THEN sign ELSE 0 END) <> 0
        OR sum(CASE WHEN provider_confirmation->>'deliveryStatus' IN ('delivered', 'read') THEN sign ELSE 0 END) <> 0
        OR sum(CASE WHEN status = 'validated' THEN sign ELSE 0 END) <> 0
        OR sum(CASE WHEN status = 'failed' THEN sign ELSE 0 END) <> 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER phone_validations_stats_insert AFTER INSERT ON phone_validations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION validation_stats_append();
CREATE TRIGGER phone_validations_stats_update AFTER UPDATE ON phone_validations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION validation_stats_append();
