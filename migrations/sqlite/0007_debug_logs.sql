-- Request debugging ([P6]): for a key whose owner turned it on (api_keys.debug_enabled),
-- the request and answer bodies, kept 7 days at most and deleted with the key's
-- revocation. Nothing else in the store holds prompt or completion text.
CREATE TABLE debug_logs (
    request_id     TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    status         BIGINT NOT NULL,
    model          TEXT NOT NULL,
    request_body   TEXT NOT NULL,
    response_body  TEXT NOT NULL,
    truncated      BIGINT NOT NULL            -- 1: a body was cut at the capture limit
);
CREATE INDEX debug_logs_key_time ON debug_logs(key_id, created_at);
CREATE INDEX debug_logs_time ON debug_logs(created_at);
