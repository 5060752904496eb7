-- End users' login tokens were signed with a key each API instance made at
-- start when LOGIN_TOKEN_KEY was unset: a token from one instance failed at
-- another's JWKS, and every restart invalidated the tokens of the last hour.
-- The keys now live here, shared by every instance (issue 18, item 9).
--
-- `generation` orders the keys; the API signs with the newest one whose
-- `signs_from` has come, and publishes every key in its JWKS until its
-- successor has signed for longer than a token lives (one hour), so tokens
-- signed with it stay verifiable until they expire. The first key is
-- generation 1, inserted by whichever instance starts first
-- (`INSERT ... WHERE NOT EXISTS ... ON CONFLICT DO NOTHING`, then read: two
-- instances starting at once agree on one key). `otpctl keys rotate` adds the
-- next generation with `signs_from` a little ahead, so every instance
-- publishes the new key before any signs with it, and deletes keys no
-- longer published.
--
-- The public key is stored in the clear (it is public; the JWKS needs no
-- secret); the private key is sealed with WEBHOOK_SECRET_KEY
-- (XChaCha20-Poly1305, `enc:v1:<sealing key id>:<base64>`, associated data
-- `otp-login-token-key:<kid>`), as webhook secrets are.
CREATE TABLE login_token_keys (
    generation  integer PRIMARY KEY CHECK (generation > 0),
    kid         text NOT NULL UNIQUE,
    public_key  bytea NOT NULL CHECK (octet_length(public_key) = 32),
    private_key text NOT NULL CHECK (private_key LIKE 'enc:v1:%'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    signs_from  timestamptz NOT NULL
);
