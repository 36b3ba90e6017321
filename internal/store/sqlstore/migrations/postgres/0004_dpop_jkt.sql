-- A code requested with dpop_jkt (RFC 9449 §10) is redeemed only with a DPoP proof
-- by that key; empty for codes without one.
ALTER TABLE oauth_auth_codes ADD COLUMN dpop_jkt TEXT NOT NULL DEFAULT '';
