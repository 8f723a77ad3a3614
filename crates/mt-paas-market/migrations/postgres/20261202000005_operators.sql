-- The console's operators and their sign-in sessions (only hashes of secrets are kept).
CREATE TABLE operators (
    name          TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    operator   TEXT NOT NULL REFERENCES operators (name) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
