-- Each attempt of a task keeps its own output: a retry, or a run again after a stop, no longer
-- replaces the earlier attempt's log. `rollout_tasks.log` stays the latest attempt's (what
-- `log_bytes` measures); this table holds every attempt's, the latest included.
CREATE TABLE rollout_task_logs (
    task_id TEXT NOT NULL REFERENCES rollout_tasks (id),
    attempt INTEGER NOT NULL,
    -- bounded like the task's log (head and tail, at most 64 KiB)
    log     TEXT NOT NULL,
    PRIMARY KEY (task_id, attempt)
);

-- What earlier versions kept: the output of each task's latest attempt.
INSERT INTO rollout_task_logs (task_id, attempt, log)
SELECT id, attempts, log FROM rollout_tasks WHERE attempts > 0;
