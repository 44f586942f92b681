-- The submit queue: change requests land in one environment in order, after checks, batched and
-- checked speculatively. What the states mean and how batches are planned is the domain's
-- (cutover_domain::queue); docs/queue.md says why the tables have this shape.

CREATE TABLE queues (
    -- UUIDv7
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL REFERENCES workspaces (id),
    name                TEXT NOT NULL,
    environment_id      TEXT NOT NULL REFERENCES environments (id),
    -- W: checks running at once
    budget              INTEGER NOT NULL,
    max_batch_size      INTEGER NOT NULL,
    max_wait_seconds    INTEGER NOT NULL,
    max_flake_retries   INTEGER NOT NULL,
    -- JSON: the executor that runs checks (cutover_domain::rollouts::ExecutorSpec)
    executor            TEXT NOT NULL,
    paused              BOOLEAN NOT NULL DEFAULT FALSE,
    -- counters for the queue's own ids (requests, batches, checks) and batch order
    next_request        BIGINT NOT NULL DEFAULT 1,
    next_batch          BIGINT NOT NULL DEFAULT 1,
    next_check          BIGINT NOT NULL DEFAULT 1,
    next_seq            BIGINT NOT NULL DEFAULT 0,
    -- hash chain of every request landed, in order (cutover_domain::queue::Lineage, as i64 bits)
    lineage             BIGINT NOT NULL DEFAULT 0,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    created_by_token_id TEXT,
    created_by_name     TEXT NOT NULL
);
CREATE UNIQUE INDEX queues_name ON queues (workspace_id, name);

-- A change request: new content for one or more artifacts, with a message and an author.
CREATE TABLE queue_requests (
    queue_id        TEXT NOT NULL REFERENCES queues (id),
    -- grows with submission: within a lane, queue order is id order
    id              BIGINT NOT NULL,
    lane            TEXT NOT NULL,
    state           TEXT NOT NULL,
    -- JSON: [{"artifact": key, "content": value}], validated against each value type
    changes         TEXT NOT NULL,
    message         TEXT NOT NULL,
    author_token_id TEXT,
    author_name     TEXT NOT NULL,
    -- why it was refused (a check's output), or cancelled
    error           TEXT,
    waiting_since   BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    landed_at       BIGINT,
    -- JSON: {"artifact": version} published when it landed
    landed_versions TEXT,
    PRIMARY KEY (queue_id, id)
);
-- The planner reads live requests only: a partial index keeps that the size of the live window.
CREATE INDEX queue_requests_live ON queue_requests (queue_id, id)
    WHERE state IN ('started', 'validated', 'batched', 'processing', 'cancelling');

-- Each request's transitions: who, when, why.
CREATE TABLE queue_request_history (
    queue_id   TEXT NOT NULL,
    request_id BIGINT NOT NULL,
    -- UUIDv7: time-ordered
    id         TEXT NOT NULL,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (queue_id, request_id, id),
    FOREIGN KEY (queue_id, request_id) REFERENCES queue_requests (queue_id, id)
);

CREATE TABLE queue_batches (
    queue_id        TEXT NOT NULL REFERENCES queues (id),
    id              BIGINT NOT NULL,
    -- its place: lane, the order batches were formed in, the offset of a split part
    lane            TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    position_offset BIGINT NOT NULL,
    -- JSON: request ids, in queue order (never changes)
    requests        TEXT NOT NULL,
    -- JSON: batch ids it depends on; NULL while `creating` (set with `created` in one CAS)
    depends_on      TEXT,
    suspect         BOOLEAN NOT NULL,
    state           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (queue_id, id)
);

-- Active batches (uber/submitqueue's active_batch): written BEFORE the batch row, removed when
-- a read finds the batch terminal. No foreign key to queue_batches on purpose: a membership may
-- precede its row (an in-flight create) or outlive a failed insert (pruned by age).
CREATE TABLE queue_active_batches (
    queue_id   TEXT NOT NULL REFERENCES queues (id),
    batch_id   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (queue_id, batch_id)
);

-- Checks: one row per attempt of a batch; the executor's idempotency key is (batch, attempt).
CREATE TABLE queue_checks (
    queue_id        TEXT NOT NULL REFERENCES queues (id),
    id              BIGINT NOT NULL,
    batch_id        BIGINT NOT NULL,
    attempt         INTEGER NOT NULL,
    -- JSON: what it runs on (cutover_domain::queue::CheckBase)
    base            TEXT NOT NULL,
    -- running | passed | failed | abandoned
    status          TEXT NOT NULL,
    output          TEXT,
    idempotency_key TEXT NOT NULL,
    -- the lease token of the replica running it, and when another may give it up as lost
    run_token       BIGINT NOT NULL,
    run_deadline    BIGINT NOT NULL,
    -- a webhook check: the hash of the callback token its receiver reports with
    callback_hash   TEXT,
    started_at      BIGINT NOT NULL,
    ended_at        BIGINT,
    PRIMARY KEY (queue_id, id),
    FOREIGN KEY (queue_id, batch_id) REFERENCES queue_batches (queue_id, id)
);
CREATE INDEX queue_checks_batch ON queue_checks (queue_id, batch_id);
CREATE UNIQUE INDEX queue_checks_attempt ON queue_checks (queue_id, batch_id, attempt);

-- Per artifact, the lineage of the requests the queue landed on it.
CREATE TABLE queue_heads (
    queue_id TEXT NOT NULL REFERENCES queues (id),
    artifact TEXT NOT NULL,
    lineage  BIGINT NOT NULL,
    PRIMARY KEY (queue_id, artifact)
);
