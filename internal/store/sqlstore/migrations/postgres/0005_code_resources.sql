-- The resource indicators (RFC 8707 §2.1) an authorization request named, as a
-- JSON list; the tokens of the code are for them. '[]' when it named none.
-- Clients keep theirs in their JSON document (resources, defaultResources); a
-- client stored before resources existed has neither, and the authorization
-- server gives it the platform's audiences when it starts (oauth.MigrateClientResources).
ALTER TABLE oauth_auth_codes ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';
