-- Provisioning results travel through the outbox too (a restart loses none).
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('audit', 'usage', 'activity', 'provisioning'));
