-- An operator marks an audit alert as seen (acknowledged): the overview lists open ones.
ALTER TABLE alerts ADD COLUMN acknowledged_at TIMESTAMPTZ;
ALTER TABLE alerts ADD COLUMN acknowledged_by TEXT;
