-- Command executors are declared by the operator in the server's configuration and named by
-- rollouts; a rollout can no longer carry a program of its own. Operations stored with a program
-- get a name no configuration can declare (it is not a valid executor name), so their tasks fail
-- with "not declared" instead of running what a tenant chose.
UPDATE rollout_operations
SET executor_settings = '{"type":"command","executor":"(program given by an older version)","timeout_seconds":600}'
WHERE executor = 'command';
