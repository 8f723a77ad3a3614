-- A service refuses a command whose signed target is not its own: the command is 'rejected'.
CREATE TABLE commands_new (
    id              TEXT PRIMARY KEY NOT NULL,
    service_id      TEXT NOT NULL REFERENCES services (id),
    tenant_id       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'applied', 'superseded', 'failed', 'rejected')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    detail          TEXT,
    created_at      TEXT NOT NULL,
    acked_at        TEXT
) STRICT;
INSERT INTO commands_new SELECT * FROM commands;
DROP TABLE commands;
ALTER TABLE commands_new RENAME TO commands;
CREATE INDEX commands_pending ON commands (service_id, status, created_at);
