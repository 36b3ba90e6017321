-- A UMA share may carry conditions (issue 14): days of the week, a daily
-- window and dates in a time zone, as structured JSON that the policy engine
-- decides; NULL when the share holds at all times.
ALTER TABLE uma_shares ADD COLUMN conditions JSONB;
