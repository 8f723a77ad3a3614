-- Entitlements fetched from the market (served while it is unreachable, up to the offline grace).
CREATE TABLE entitlements (
    tenant_id  TEXT PRIMARY KEY NOT NULL,
    body       TEXT NOT NULL,
    etag       TEXT,
    revision   BIGINT NOT NULL,
    fetched_at TIMESTAMPTZ NOT NULL
);

-- The newest revision of a completed bulk sync.
CREATE TABLE market_sync (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    revision  BIGINT NOT NULL,
    synced_at TIMESTAMPTZ NOT NULL
);

-- webhook-id of every accepted command (replay protection), kept past the timestamp tolerance.
CREATE TABLE seen_webhooks (
    id          TEXT PRIMARY KEY NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
