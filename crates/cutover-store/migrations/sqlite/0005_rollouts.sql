-- Rollouts: version V of an artifact applied to every deployment target of an environment, as one
-- operation per target made of tasks. The rollout's state is derived from all of its operation
-- rows by the domain (cutover_domain::rollouts) and written compare-and-set.

CREATE TABLE rollouts (
    -- UUIDv7
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL REFERENCES workspaces (id),
    artifact_id         TEXT NOT NULL REFERENCES artifacts (id),
    environment_id      TEXT NOT NULL REFERENCES environments (id),
    -- the version number being rolled out
    version             BIGINT NOT NULL,
    -- pending | running | paused | running_degraded | stopping | stopped | completed | failed | cancelled
    state               TEXT NOT NULL,
    -- how many operations it was created with: a read with another count derives nothing
    operation_count     INTEGER NOT NULL,
    max_parallel        INTEGER NOT NULL,
    on_failure          TEXT NOT NULL,
    failure_budget      INTEGER,
    -- JSON array of step names, copied from the request or the default ["apply"]
    steps               TEXT NOT NULL,
    -- the pin write of a completed rollout, once: its revision
    pinned_revision     BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    ended_at            BIGINT,
    created_by_token_id TEXT,
    created_by_name     TEXT NOT NULL
);
CREATE INDEX rollouts_by_workspace ON rollouts (workspace_id, created_at);
-- What the engine scans: live rollouts only, whatever the history.
CREATE INDEX rollouts_live ON rollouts (created_at)
    WHERE state NOT IN ('completed', 'failed', 'cancelled');

CREATE TABLE rollout_operations (
    id                TEXT PRIMARY KEY,
    rollout_id        TEXT NOT NULL REFERENCES rollouts (id),
    target            TEXT NOT NULL,
    -- JSON object: the target's configuration when the rollout was created
    target_config     TEXT NOT NULL,
    position          INTEGER NOT NULL,
    wave              INTEGER NOT NULL,
    state             TEXT NOT NULL,
    -- the policy this operation was created with; an absent policy is stored as halt
    on_failure        TEXT NOT NULL,
    pause_released    BOOLEAN NOT NULL DEFAULT FALSE,
    -- command | webhook | manual, and its settings as a JSON object
    executor          TEXT NOT NULL,
    executor_settings TEXT NOT NULL,
    started_at        BIGINT,
    ended_at          BIGINT,
    updated_at        BIGINT NOT NULL,
    UNIQUE (rollout_id, position)
);
-- Operations still being stopped keep their rollout on the engine's list after it is terminal
-- (a cancelled rollout's running tasks must still be stopped).
CREATE INDEX rollout_operations_stopping ON rollout_operations (rollout_id) WHERE state = 'stopping';

CREATE TABLE rollout_tasks (
    id              TEXT PRIMARY KEY,
    rollout_id      TEXT NOT NULL REFERENCES rollouts (id),
    operation_id    TEXT NOT NULL REFERENCES rollout_operations (id),
    position        INTEGER NOT NULL,
    step            TEXT NOT NULL,
    -- pending | running | completed | failed | stopped | cancelled
    state           TEXT NOT NULL,
    -- runs so far; a run after a crash or a retry is a new attempt with the same idempotency key
    attempts        INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT NOT NULL,
    -- the lease token of the run that may record this task's result (fencing)
    run_token       BIGINT,
    -- a run started before a crash may still be executing until then (its own timeout)
    run_deadline    BIGINT,
    exit_code       INTEGER,
    error           TEXT,
    -- bounded output of the last run
    log             TEXT NOT NULL DEFAULT '',
    started_at      BIGINT,
    ended_at        BIGINT,
    updated_at      BIGINT NOT NULL,
    UNIQUE (operation_id, position)
);
CREATE INDEX rollout_tasks_by_rollout ON rollout_tasks (rollout_id, operation_id, position);

-- Leases: who drives a unit of work (a rollout, a queue, a pool) until when. Portable SQL: taken
-- with an upsert that only succeeds when the lease is free, expired or already ours; the token
-- grows on every new holder, so a late write from a previous holder can be refused.
CREATE TABLE leases (
    resource   TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
