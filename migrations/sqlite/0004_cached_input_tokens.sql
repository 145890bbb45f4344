-- Input tokens read from the provider's prompt cache (a part of input_tokens), which
-- models can price apart (`cached-input-usd-per-mtok`).
ALTER TABLE usage_events ADD COLUMN cached_input_tokens BIGINT NOT NULL DEFAULT 0;
