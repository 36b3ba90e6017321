-- The resources of the original grant (RFC 8707 §2.2) on each refresh token: a
-- refresh may name some of them and gets all of them without resource, never
-- more (the client's defaults could be wider). '[]' for a token stored before,
-- which counts as a grant for the client's default resources.
-- The resources a device authorization request named (RFC 8707 §2, RFC 8628
-- §3.1); '[]' when it named none.
ALTER TABLE oauth_refresh_tokens ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';
ALTER TABLE oauth_device_codes ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';
