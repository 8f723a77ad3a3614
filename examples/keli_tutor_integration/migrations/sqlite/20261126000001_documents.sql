-- keli_tutor's per-tenant data: uploaded documents and their chunks. `embedding` (a JSON
-- array) serves searches when no vector store is configured (the embedded-defaults run).
CREATE TABLE documents (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    title      TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE chunks (
    id          TEXT PRIMARY KEY NOT NULL,
    document_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    content     TEXT NOT NULL,
    embedding   TEXT NOT NULL
);
