-- The requesting party (a user id) that the UMA claims-interaction endpoint
-- bound to a permission ticket (UMA 2.0 Grant §3.3.2, §3.3.3); '' for a ticket
-- no party was bound to.
ALTER TABLE uma_tickets ADD COLUMN party TEXT NOT NULL DEFAULT '';
