-- The reference market's schema.

CREATE TABLE plans (
    id                  TEXT PRIMARY KEY NOT NULL,
    name                TEXT NOT NULL,
    features            TEXT NOT NULL DEFAULT '{}',
    requests_per_minute BIGINT,
    created_at          TIMESTAMPTZ NOT NULL
);

CREATE TABLE services (
    id             TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL,
    api_key_hash   TEXT NOT NULL,
    webhook_secret TEXT NOT NULL,
    base_url       TEXT,
    created_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL
);

CREATE TABLE subscriptions (
    service_id TEXT NOT NULL REFERENCES services (id),
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    plan_id    TEXT NOT NULL REFERENCES plans (id),
    state      TEXT NOT NULL CHECK (state IN ('pending_activation', 'active', 'suspended', 'cancelled')),
    expires_at TIMESTAMPTZ,
    revision   BIGINT NOT NULL,
    sequence   BIGINT NOT NULL DEFAULT 0,
    block      TEXT,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (service_id, tenant_id)
);
CREATE INDEX subscriptions_revision ON subscriptions (service_id, revision);

CREATE TABLE revision_counter (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO revision_counter (id, value) VALUES (1, 0);

CREATE TABLE commands (
    id              TEXT PRIMARY KEY NOT NULL,
    service_id      TEXT NOT NULL REFERENCES services (id),
    tenant_id       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'applied', 'superseded', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error      TEXT,
    detail          TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    acked_at        TIMESTAMPTZ
);
CREATE INDEX commands_pending ON commands (service_id, status, created_at);

CREATE TABLE instances (
    service_id  TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    status      TEXT NOT NULL,
    body        TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (service_id, instance_id)
);

CREATE TABLE usage_records (
    service_id     TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    dimension      TEXT NOT NULL,
    period_start   TIMESTAMPTZ NOT NULL,
    instance_id    TEXT NOT NULL,
    period_seconds BIGINT NOT NULL,
    quantity       BIGINT NOT NULL,
    received_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (service_id, tenant_id, dimension, period_start, instance_id)
);

CREATE TABLE alerts (
    service_id  TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    alert_type  TEXT NOT NULL,
    severity    TEXT NOT NULL,
    details     TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (service_id, event_id)
);

CREATE TABLE provisioning_results (
    command_id  TEXT PRIMARY KEY NOT NULL,
    service_id  TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    status      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE sso_codes (
    code_hash      TEXT PRIMARY KEY NOT NULL,
    service_id     TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    used           BOOLEAN NOT NULL DEFAULT FALSE
);
