-- Foundation: workspaces, tokens, environments, artifacts, versions, audit.
-- Ids are TEXT (UUIDv7), times BIGINT microseconds since the epoch, JSON is TEXT.

CREATE TABLE workspaces (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    admin             BOOLEAN NOT NULL DEFAULT FALSE,
    -- bumped by every change to what resolve returns; the ETag of resolve
    revision          BIGINT NOT NULL DEFAULT 0,
    -- kept in step with environments so the per-workspace limit holds under concurrency
    environment_count BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL
);
CREATE UNIQUE INDEX workspaces_one_admin ON workspaces (admin) WHERE admin;

CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'viewer', 'sdk')),
    hash          TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    created_by_id TEXT,
    created_by    TEXT,
    revoked_at    BIGINT,
    revoked_by    TEXT
);
CREATE INDEX tokens_by_workspace ON tokens (workspace_id, created_at);

CREATE TABLE environments (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    protected    BOOLEAN NOT NULL DEFAULT FALSE,
    targets      TEXT NOT NULL DEFAULT '[]',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (workspace_id, name)
);

-- A token limited to some environments. RESTRICT: an environment a live token depends on
-- cannot be deleted.
CREATE TABLE token_environments (
    token_id       TEXT NOT NULL REFERENCES tokens (id),
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE RESTRICT,
    PRIMARY KEY (token_id, environment_id)
);
CREATE INDEX token_environments_by_environment ON token_environments (environment_id);

CREATE TABLE artifacts (
    id             TEXT PRIMARY KEY,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id),
    key            TEXT NOT NULL,
    value_type     TEXT NOT NULL CHECK (value_type IN ('string', 'json', 'boolean', 'number')),
    kind           TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    -- the version counter: incremented under the row's write lock, so numbers have no gaps
    latest_version BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (workspace_id, key)
);

CREATE TABLE versions (
    artifact_id     TEXT NOT NULL REFERENCES artifacts (id),
    number          BIGINT NOT NULL,
    content         TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    message         TEXT NOT NULL DEFAULT '',
    author_token_id TEXT NOT NULL,
    author_name     TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (artifact_id, number)
);

CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id),
    at             BIGINT NOT NULL,
    actor_token_id TEXT NOT NULL,
    actor_name     TEXT NOT NULL,
    action         TEXT NOT NULL,
    object_type    TEXT NOT NULL,
    object_id      TEXT NOT NULL,
    before         TEXT,
    after          TEXT
);
CREATE INDEX audit_by_workspace ON audit_events (workspace_id, seq);
CREATE INDEX audit_by_object ON audit_events (workspace_id, object_type, object_id, seq);
CREATE INDEX audit_by_actor ON audit_events (workspace_id, actor_token_id, seq);
