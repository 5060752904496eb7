-- Webhook signing secrets are encrypted at rest with WEBHOOK_SECRET_KEY
-- (XChaCha20-Poly1305, the client id as associated data), in place, in the
-- columns that held them: `enc:v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`.
-- SQL cannot encrypt (it has no key), so this migration changes no row: a
-- value without the prefix is a secret from before encryption, still read as
-- it is, and the webhook worker seals every such row when it starts (and
-- re-seals rows of a previous key after a rotation), each row replaced only
-- if it still holds what was read. Kept in the same columns, rather than new
-- ones beside them, so there is never a second copy to clear and
-- `otpctl client rotate-secret` still copies the current value to the
-- previous one unchanged. Rows still in the clear:
--   SELECT count(*) FROM clients WHERE webhook_secret NOT LIKE 'enc:%';
COMMENT ON COLUMN clients.webhook_secret IS
    'enc:v1:<key id>:<base64> sealed with WEBHOOK_SECRET_KEY; a value without the prefix predates encryption and is sealed by the webhook worker at start';
COMMENT ON COLUMN clients.previous_webhook_secret IS
    'as webhook_secret: sealed with WEBHOOK_SECRET_KEY';
