-- DOCKER_PER_TENANT: the index of the tenant's port block; unique so that two concurrent
-- provisionings can never share one.
ALTER TABLE tenants ADD COLUMN port_block INTEGER CHECK (port_block >= 0);
CREATE UNIQUE INDEX tenants_port_block ON tenants (port_block);
