-- The console's charts over the last hours: each replica's heartbeat counters summed by
-- five-minute bucket (kept a day), and when a pending command last went out in a
-- heartbeat response (delivered, not yet answered).
CREATE TABLE heartbeat_samples (
    service_id     TEXT NOT NULL,
    instance_id    TEXT NOT NULL,
    bucket_start   TIMESTAMPTZ NOT NULL,
    window_seconds BIGINT NOT NULL,
    requests       BIGINT NOT NULL,
    errors         BIGINT NOT NULL,
    latency_sum_ms DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (service_id, instance_id, bucket_start)
);
CREATE INDEX heartbeat_samples_bucket ON heartbeat_samples (bucket_start);

ALTER TABLE commands ADD COLUMN delivered_at TIMESTAMPTZ;
