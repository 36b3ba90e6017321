-- verified_email is the user's primary address, lower-cased in Go, while it is
-- verified; NULL otherwise. Its unique index lets at most one user hold an
-- address verified, while any number may hold it unverified (issue 12).
ALTER TABLE users ADD COLUMN verified_email TEXT;
UPDATE users SET verified_email = lower(COALESCE(
	(SELECT json_extract(e.value, '$.value') FROM json_each(users.doc, '$.emails') AS e
	 WHERE json_extract(e.value, '$.primary') = 1 LIMIT 1),
	json_extract(users.doc, '$.emails[0].value')))
WHERE json_extract(doc, '$.emailVerified') = 1;
-- Before this migration two users could both have verified one address: the
-- one who holds it longest keeps it verified, the others hold it unverified.
UPDATE users SET verified_email = NULL, doc = json_set(doc, '$.emailVerified', json('false'))
WHERE verified_email IS NOT NULL AND EXISTS (
	SELECT 1 FROM users AS o WHERE o.verified_email = users.verified_email
	AND (o.created < users.created OR (o.created = users.created AND o.id < users.id)));
CREATE UNIQUE INDEX users_verified_email ON users (verified_email) WHERE verified_email IS NOT NULL;
