-- Sends per phone, the ledger behind the resend cooldown and the hourly cap:
-- one row per (client, country code, phone) with the last send and the sends
-- of the last hour. A create upserts it in the same statement that inserts the
-- validation and its event; the row lock that INSERT ... ON CONFLICT DO UPDATE
-- takes (and its re-check of the WHERE clause against the latest row version)
-- serializes concurrent creates for one phone, so the limits hold under any
-- concurrency in a single round trip, without a separate lock.
CREATE TABLE phone_send_windows (
    client_id     text NOT NULL,
    country_code  text NOT NULL,
    phone         text NOT NULL,
    last_sent_at  timestamptz NOT NULL,
    -- Sends within the last hour, oldest first (pruned on every send).
    sent_at       timestamptz[] NOT NULL,
    PRIMARY KEY (client_id, country_code, phone)
);
