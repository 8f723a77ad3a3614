-- Entitlements fetched from the market (served while it is unreachable, up to the offline grace).
CREATE TABLE entitlements (
    tenant_id  TEXT PRIMARY KEY NOT NULL,
    body       TEXT NOT NULL,
    etag       TEXT,
    revision   INTEGER NOT NULL,
    fetched_at TEXT NOT NULL
) STRICT;

-- The newest revision of a completed bulk sync.
CREATE TABLE market_sync (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    revision  INTEGER NOT NULL,
    synced_at TEXT NOT NULL
) STRICT;

-- webhook-id of every accepted command (replay protection), kept past the timestamp tolerance.
CREATE TABLE seen_webhooks (
    id          TEXT PRIMARY KEY NOT NULL,
    received_at TEXT NOT NULL
) STRICT;
