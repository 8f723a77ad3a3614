-- The durable outbox (DESIGN §7): audit alerts, usage records and xAPI statements waiting for
-- delivery. `id` is the item's stable id (event_id, usage key, statement id): a retry is
-- idempotent at the receiver.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('audit', 'usage', 'activity')),
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    leased_until    TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT
) STRICT;
CREATE INDEX outbox_due ON outbox (kind, status, next_attempt_at);
