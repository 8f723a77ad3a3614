CREATE TABLE tenants (
    id             TEXT PRIMARY KEY NOT NULL,
    display_name   TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('provisioning', 'active', 'suspended', 'archived')),
    isolation_mode TEXT CHECK (isolation_mode IN ('DATABASE_PER_TENANT', 'SCHEMA_PER_TENANT', 'DOCKER_PER_TENANT')),
    placement      TEXT NOT NULL DEFAULT '{}',
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
