-- Delivery claims take the oldest due items of a kind (ORDER BY created_at, id LIMIT n):
-- an index in that order lets a claim stop after n rows instead of sorting every pending one.
DROP INDEX outbox_due;
CREATE INDEX outbox_queue ON outbox (kind, status, created_at, id);
