-- The resource indicators (RFC 8707 §2.1) an authorization request named, as a
-- JSON list; the tokens of the code are for them. '[]' when it named none.
-- Clients keep theirs in their JSON document (resources, defaultResources); a
-- client stored before resources existed has neither, which means every resource
-- of the platform, as before: it needs no data migration.
ALTER TABLE oauth_auth_codes ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';
