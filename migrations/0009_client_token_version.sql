-- Revocable client tokens: every client token carries the client's
-- `token_version` at issue (`ver`), and the API accepts only tokens of the
-- current version. `otpctl token revoke --client ID` bumps it, so every token
-- issued before stops working at once (within the API's two-second cache).
-- Tokens issued before this column existed carry no version and count as 0.
-- A constant default: no table rewrite.
ALTER TABLE clients ADD COLUMN token_version integer NOT NULL DEFAULT 0;
