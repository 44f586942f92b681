-- Warm pools: a pool keeps a desired number of ready instances of a preset (the version pinned
-- to its environment plus parameters), created and deleted through builds that a declared
-- executor (the provisioner) runs. What the rows mean is the domain's (cutover_domain::pools).

CREATE TABLE pools (
    -- UUIDv7
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL REFERENCES workspaces (id),
    name                TEXT NOT NULL,
    artifact_id         TEXT NOT NULL REFERENCES artifacts (id),
    environment_id      TEXT NOT NULL REFERENCES environments (id),
    -- JSON object handed to the provisioner with the version
    parameters          TEXT NOT NULL,
    -- JSON array of the agent names every instance reports for
    agents              TEXT NOT NULL,
    -- a command executor the operator declared, and its timeout per build
    executor            TEXT NOT NULL,
    timeout_seconds     INTEGER NOT NULL,
    -- JSON: {"instances", "timezone", "schedules": [{"cron", "instances"}]}
    desired             TEXT NOT NULL,
    ttl_seconds         INTEGER,
    backoff_seconds     INTEGER NOT NULL,
    failure_limit       INTEGER NOT NULL,
    paused              BOOLEAN NOT NULL DEFAULT FALSE,
    -- failed starts before this time no longer count (set by resume)
    failures_reset_at   BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    deleted_at          BIGINT,
    created_by_token_id TEXT,
    created_by_name     TEXT NOT NULL
);
CREATE UNIQUE INDEX pools_name ON pools (workspace_id, name) WHERE deleted_at IS NULL;

-- A preset: a version of the pool's artifact with the pool's parameters at that time.
CREATE TABLE pool_presets (
    id         TEXT PRIMARY KEY,
    pool_id    TEXT NOT NULL REFERENCES pools (id),
    version    BIGINT NOT NULL,
    parameters TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX pool_presets_by_pool ON pool_presets (pool_id, created_at);

CREATE TABLE pool_instances (
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL REFERENCES workspaces (id),
    -- the owner: the pool until the instance is claimed, then NULL (the claimer below)
    pool_id             TEXT REFERENCES pools (id),
    -- the pool that made it, for ever
    origin_pool_id      TEXT NOT NULL REFERENCES pools (id),
    created_at          BIGINT NOT NULL,
    -- a claim reserves the instance in the transaction that hands it out
    claimed_at          BIGINT,
    claimed_by_token_id TEXT,
    claimed_by_name     TEXT,
    -- set compare-and-set by the reconciler, never on a claimed instance, before its delete build
    delete_requested_at BIGINT,
    -- soft delete: its delete build succeeded
    deleted_at          BIGINT
);
-- What the running-instances query starts from: a pool's live instances, whatever the history
-- (both columns compared by equality, so SQLite's planner takes it as readily as PostgreSQL's).
CREATE INDEX pool_instances_live ON pool_instances (pool_id, deleted_at, id);
CREATE INDEX pool_instances_by_origin ON pool_instances (origin_pool_id, id);

CREATE TABLE pool_builds (
    id              TEXT PRIMARY KEY,
    instance_id     TEXT NOT NULL REFERENCES pool_instances (id),
    pool_id         TEXT NOT NULL REFERENCES pools (id),
    -- 1, 2, 3... per instance: the latest build is the highest number
    number          INTEGER NOT NULL,
    -- start | stop | delete
    transition      TEXT NOT NULL,
    -- pending | running | succeeded | failed | canceled
    status          TEXT NOT NULL,
    -- the preset a start builds
    preset_id       TEXT REFERENCES pool_presets (id),
    -- the same on every attempt: a provisioner re-run after a crash can tell it did the work
    idempotency_key TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- the lease token of the run that may record the result, and until when it may run
    run_token       BIGINT,
    run_deadline    BIGINT,
    error           TEXT,
    log             TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    started_at      BIGINT,
    ended_at        BIGINT,
    UNIQUE (instance_id, number)
);
-- The failure record: a pool's builds newest first.
CREATE INDEX pool_builds_by_pool ON pool_builds (pool_id, created_at);
-- The engine's work: builds not finished.
CREATE INDEX pool_builds_open ON pool_builds (pool_id) WHERE status IN ('pending', 'running');

CREATE TABLE pool_agents (
    id          TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES pool_instances (id),
    build_id    TEXT NOT NULL REFERENCES pool_builds (id),
    name        TEXT NOT NULL,
    -- NULL for a top-level agent: only those decide readiness
    parent_id   TEXT REFERENCES pool_agents (id),
    -- created | starting | ready | error | shutting_down | off
    lifecycle   TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    deleted_at  BIGINT,
    UNIQUE (build_id, name)
);

-- The credential an instance's agents report with, scoped to that instance; stored as a hash
-- like API tokens, handed to the provisioner in its environment, replaced on every build run.
CREATE TABLE pool_instance_tokens (
    token_hash  TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES pool_instances (id),
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX pool_instance_tokens_by_instance ON pool_instance_tokens (instance_id);
