-- The kill switch (seed §5.2): the newest block or unblock command per tenant.
CREATE TABLE kill_switch (
    tenant_id  TEXT PRIMARY KEY NOT NULL,
    sequence   INTEGER NOT NULL,
    command_id TEXT NOT NULL,
    block      TEXT,
    updated_at TEXT NOT NULL
) STRICT;
