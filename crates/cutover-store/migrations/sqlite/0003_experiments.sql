-- Experiments: an (artifact, environment) split between versions of the artifact.

CREATE TABLE experiments (
    -- UUIDv7
    id                TEXT PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id),
    artifact_id       TEXT NOT NULL REFERENCES artifacts (id),
    environment_id    TEXT NOT NULL REFERENCES environments (id),
    name              TEXT NOT NULL,
    hypothesis        TEXT NOT NULL DEFAULT '',
    -- JSON array of {"version", "weight"}; the first is the control; weights sum to 1
    variants          TEXT NOT NULL,
    -- share of traffic in the experiment, 0 to 1
    coverage          DOUBLE PRECISION NOT NULL,
    -- fixed at creation: assignment hashes (seed, targeting key)
    seed              TEXT NOT NULL,
    primary_metric    TEXT NOT NULL,
    -- JSON array of metric names
    guardrail_metrics TEXT NOT NULL DEFAULT '[]',
    -- created | running | paused | completed, changed only by the domain's lifecycle
    status            TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    started_at        BIGINT,
    ended_at          BIGINT,
    deleted_at        BIGINT
);
-- The rule: at most one non-completed, non-deleted experiment per (artifact, environment). It is
-- this index that holds it under concurrency; the application's check only answers first.
CREATE UNIQUE INDEX experiments_one_active ON experiments (artifact_id, environment_id)
    WHERE status <> 'completed' AND deleted_at IS NULL;
-- Listing an environment's experiments.
CREATE INDEX experiments_by_environment ON experiments (environment_id, created_at);
