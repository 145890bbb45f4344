-- Routing: the model the client named when routing chose another (`tokenroute-auto`,
-- an alias; empty otherwise), and how many upstream attempts the request took.
ALTER TABLE usage_events ADD COLUMN route TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_events ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1;
