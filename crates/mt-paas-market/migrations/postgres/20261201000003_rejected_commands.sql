-- A service refuses a command whose signed target is not its own: the command is 'rejected'.
ALTER TABLE commands DROP CONSTRAINT commands_status_check;
ALTER TABLE commands ADD CONSTRAINT commands_status_check
    CHECK (status IN ('pending', 'applied', 'superseded', 'failed', 'rejected'));
