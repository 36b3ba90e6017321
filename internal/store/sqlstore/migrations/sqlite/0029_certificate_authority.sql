-- The manufacturer CA each certificate recorded on a thing chained to when
-- the platform accepted it (certauth's provisioning and renewal; '' for
-- the platform's own CA and certificates recorded otherwise), so that the
-- console counts a CA's things with those whose certificate an
-- intermediate of the CA issued. Certificates recorded before stay
-- counted by their issuer alone.
ALTER TABLE thing_certificates ADD COLUMN ca_id TEXT NOT NULL DEFAULT '';
CREATE INDEX thing_certificates_ca ON thing_certificates (ca_id, thing_id);
