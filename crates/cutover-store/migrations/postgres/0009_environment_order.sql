-- Environments are listed in an order their users set (dev, staging, production), not by name.
-- Existing environments keep the alphabetical order they were listed in; new ones go last.
ALTER TABLE environments ADD COLUMN position BIGINT NOT NULL DEFAULT 0;
UPDATE environments SET position = (
    SELECT COUNT(*) FROM environments AS earlier
    WHERE earlier.workspace_id = environments.workspace_id AND earlier.name <= environments.name
);
