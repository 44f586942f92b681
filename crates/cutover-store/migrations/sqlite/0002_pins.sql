-- Pins: which version owns each (artifact, environment), with full history, and the change log
-- that resolve clients replay.

-- Every interval during which a version owned an environment. A move closes the open row
-- (ended_*) and opens a new one; rows are never rewritten otherwise.
CREATE TABLE pins (
    id             TEXT PRIMARY KEY,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id),
    artifact_id    TEXT NOT NULL REFERENCES artifacts (id),
    environment_id TEXT NOT NULL REFERENCES environments (id),
    version        BIGINT NOT NULL,
    -- the workspace revision that opened the interval: what If-Match compares against
    revision       BIGINT NOT NULL,
    reason         TEXT NOT NULL DEFAULT '',
    started_at     BIGINT NOT NULL,
    started_by_id  TEXT NOT NULL,
    started_by     TEXT NOT NULL,
    ended_at       BIGINT,
    ended_by_id    TEXT,
    ended_by       TEXT,
    end_reason     TEXT,
    FOREIGN KEY (artifact_id, version) REFERENCES versions (artifact_id, number)
);
-- The rule: one active pin per (artifact, environment). It is this index that holds it under
-- concurrency; the application's check only gives the clearer message.
CREATE UNIQUE INDEX pins_one_active ON pins (artifact_id, environment_id) WHERE ended_at IS NULL;
-- What is live in an environment, whatever the history size.
CREATE INDEX pins_active_by_environment ON pins (environment_id) WHERE ended_at IS NULL;
CREATE INDEX pins_active_by_workspace ON pins (workspace_id) WHERE ended_at IS NULL;
-- History of one (artifact, environment), newest first.
CREATE INDEX pins_history ON pins (artifact_id, environment_id, revision);

-- One row per revision of a workspace: what changed, for the change stream's replay.
CREATE TABLE changes (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    revision     BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    -- JSON array of {"artifact", "environment", "version" (null when unpinned)}
    pins         TEXT NOT NULL,
    PRIMARY KEY (workspace_id, revision)
);
