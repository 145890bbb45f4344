-- Every change of an account's balance projection advances its version. Changes of one
-- account are serialized by its row's lock, so a higher version is always a later
-- balance: proxy nodes sharing state through Redis keep the newest balance they are
-- told of and never go back to an older one (see proxy/src/shared/).
ALTER TABLE account_balances ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
