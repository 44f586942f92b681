-- Exposures and conversions, kept as running totals so that results read a handful of rows
-- whatever the traffic.

-- Which variant each user was assigned: one row per (experiment, user), written on the first
-- exposure only. Assignment is deterministic and an experiment's variants never change after
-- creation, so the variant of a user never changes either.
CREATE TABLE exposures (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    targeting_key TEXT NOT NULL,
    -- index into the experiment's variants; 0 is the control
    variant       INTEGER NOT NULL,
    exposed_at    BIGINT NOT NULL,
    PRIMARY KEY (experiment_id, targeting_key)
) WITHOUT ROWID; -- one B-tree keyed by the primary key: half the writes of a rowid table and its index

-- Exposures per variant, moved in the same transaction as the rows of `exposures` they count.
CREATE TABLE exposure_totals (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    variant       INTEGER NOT NULL,
    exposures     BIGINT NOT NULL,
    PRIMARY KEY (experiment_id, variant)
);

-- One exposed user's running total of one metric: what lets the per-variant sums of squares
-- move incrementally (a user's value is the sum of their events' values).
CREATE TABLE metric_users (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    metric        TEXT NOT NULL,
    targeting_key TEXT NOT NULL,
    variant       INTEGER NOT NULL,
    events        BIGINT NOT NULL,
    total         DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (experiment_id, metric, targeting_key)
) WITHOUT ROWID;

-- Per (experiment, metric, variant): users with at least one event (conversions), events, events
-- that carried a value, and the sum and sum of squares of the per-user totals.
CREATE TABLE metric_totals (
    experiment_id  TEXT NOT NULL REFERENCES experiments (id),
    metric         TEXT NOT NULL,
    variant        INTEGER NOT NULL,
    conversions    BIGINT NOT NULL,
    events         BIGINT NOT NULL,
    valued_events  BIGINT NOT NULL,
    sum            DOUBLE PRECISION NOT NULL,
    sum_of_squares DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (experiment_id, metric, variant)
);
