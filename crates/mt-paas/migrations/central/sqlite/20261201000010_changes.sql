-- Changes announced to the other processes on this central DB (the CLI beside a running
-- service, several replicas): SQLite has no NOTIFY, so each process reads what was appended
-- since it last looked (a few times a second). Rows older than ten minutes are pruned.
CREATE TABLE changes (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key   TEXT NOT NULL,
    at    TEXT NOT NULL
) STRICT;
