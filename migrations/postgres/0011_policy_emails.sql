-- When a policy-change announcement was emailed to every active account ([P21]),
-- where an email sender is configured. (Same in migrations/postgres/ and sqlite/.)
ALTER TABLE announcements ADD COLUMN emailed_at BIGINT;
