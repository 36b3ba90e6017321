-- The platform CA and the device issuing CA, as the files of a data
-- directory's pki folder (certificates in PEM, keys sealed with the master
-- key): the first node stores them and every other node of the database
-- takes them, so that all issue and check certificates with the same CAs
-- (issue 17). A node keeps its copy in its pki folder.
CREATE TABLE pki_ca_files (
	name    TEXT  NOT NULL PRIMARY KEY,
	content BYTEA NOT NULL
);

-- A node that starts reads the grants revoked within the longest access
-- token lifetime (tokens.Verifier), so that it refuses their tokens as the
-- nodes that saw the revocation events do.
CREATE INDEX oauth_grants_revoked ON oauth_grants (revoked_at) WHERE revoked_at IS NOT NULL;
