-- verified_email is the user's primary address, lower-cased in Go, while it is
-- verified; NULL otherwise. Its unique index lets at most one user hold an
-- address verified, while any number may hold it unverified (issue 12).
ALTER TABLE users ADD COLUMN verified_email TEXT;
UPDATE users SET verified_email = lower(COALESCE(
	(SELECT e->>'value' FROM jsonb_array_elements(
		CASE WHEN jsonb_typeof(users.doc->'emails') = 'array' THEN users.doc->'emails' ELSE '[]'::jsonb END) AS e
	 WHERE e->'primary' = 'true'::jsonb LIMIT 1),
	users.doc->'emails'->0->>'value'))
WHERE doc->'emailVerified' = 'true'::jsonb;
-- Before this migration two users could both have verified one address: the
-- one who holds it longest keeps it verified, the others hold it unverified.
UPDATE users AS u SET verified_email = NULL, doc = jsonb_set(u.doc, '{emailVerified}', 'false'::jsonb)
WHERE u.verified_email IS NOT NULL AND EXISTS (
	SELECT 1 FROM users AS o WHERE o.verified_email = u.verified_email
	AND (o.created < u.created OR (o.created = u.created AND o.id < u.id)));
CREATE UNIQUE INDEX users_verified_email ON users (verified_email) WHERE verified_email IS NOT NULL;
