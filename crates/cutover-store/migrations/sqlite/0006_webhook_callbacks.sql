-- Webhook tasks: the receiver reports a run's progress and result with a callback token sent in
-- the delivery. Only its sha256 (hex) is kept, new for every run, so that a run's token stops
-- working once another run of the task has started.
ALTER TABLE rollout_tasks ADD COLUMN callback_hash TEXT;
