-- The identity provider's subject (the ID token's `sub`) of each account, so deleting
-- an account can ask Logto to delete the user too ([P14] [P19]); and when that was done.
-- (Same in migrations/postgres/ and migrations/sqlite/.)
ALTER TABLE accounts ADD COLUMN idp_subject TEXT;
ALTER TABLE accounts ADD COLUMN idp_deleted_at BIGINT;
