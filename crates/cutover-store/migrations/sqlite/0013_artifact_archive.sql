-- An archived artifact is hidden from lists and from resolve, and keeps its versions, pins and
-- history; unarchiving brings it back as it was. NULL: not archived. Microseconds since the epoch,
-- as every other time.
ALTER TABLE artifacts ADD COLUMN archived_at BIGINT;
