-- Alerts older than alert_retention_days are pruned every hour: an index to find them.
CREATE INDEX alerts_received ON alerts (received_at);
