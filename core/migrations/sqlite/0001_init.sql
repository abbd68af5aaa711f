-- gantryd's schema, version 1. Job states are gantry.v1.JobState numbers.

CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY,
    owner             TEXT    NOT NULL,
    submitted_by      TEXT    NOT NULL DEFAULT '',
    name              TEXT    NOT NULL,
    spec              BLOB    NOT NULL,   -- encoded gantry.v1.JobSpec, defaults filled in
    state             INTEGER NOT NULL,
    reason            TEXT    NOT NULL DEFAULT '',
    exit_code         INTEGER,
    priority          INTEGER NOT NULL,
    cpus              INTEGER NOT NULL,
    memory            INTEGER NOT NULL,
    gpus              INTEGER NOT NULL,
    nodes             INTEGER NOT NULL,
    walltime          INTEGER NOT NULL,   -- seconds, 0 = none
    req_site          TEXT    NOT NULL,   -- '' = any
    site              TEXT    NOT NULL DEFAULT '',
    partition_id      TEXT    NOT NULL DEFAULT '',
    attempt_id        TEXT    NOT NULL DEFAULT '',
    held              INTEGER NOT NULL DEFAULT 0,
    deps_pending      INTEGER NOT NULL DEFAULT 0,
    client_request_id TEXT,
    submit_ms         INTEGER NOT NULL,
    placed_ms         INTEGER NOT NULL DEFAULT 0,
    start_ms          INTEGER NOT NULL DEFAULT 0,
    end_ms            INTEGER NOT NULL DEFAULT 0,
    last_seq          INTEGER NOT NULL,
    outputs           TEXT    NOT NULL DEFAULT ''  -- stored output paths, one per line
);
CREATE UNIQUE INDEX jobs_by_request ON jobs (owner, client_request_id) WHERE client_request_id IS NOT NULL;
CREATE INDEX jobs_by_owner ON jobs (owner, id);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_attempt ON jobs (attempt_id) WHERE attempt_id <> '';

CREATE TABLE job_labels (
    job_id INTEGER NOT NULL,
    key    TEXT    NOT NULL,
    value  TEXT    NOT NULL,
    PRIMARY KEY (job_id, key)
);
CREATE INDEX job_labels_by_value ON job_labels (key, value, job_id);

-- job_id may start only after after_id COMPLETED.
CREATE TABLE job_deps (
    after_id INTEGER NOT NULL,
    job_id   INTEGER NOT NULL,
    PRIMARY KEY (after_id, job_id)
);

-- The append-only history; seq is the global change sequence.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,
    job_id     INTEGER NOT NULL,
    owner      TEXT    NOT NULL,
    time_ms    INTEGER NOT NULL,
    from_state INTEGER NOT NULL,
    to_state   INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    exit_code  INTEGER
);
CREATE INDEX events_by_job ON events (job_id, seq);

-- Compute provisioned (or being provisioned) on gates. State numbers are
-- gantry.v1.PartitionState. A row is written before the gate is asked.
CREATE TABLE partitions (
    id         TEXT    PRIMARY KEY,
    site       TEXT    NOT NULL,
    flavor     TEXT    NOT NULL,
    state      INTEGER NOT NULL,
    message    TEXT    NOT NULL DEFAULT '',
    cpus       INTEGER NOT NULL DEFAULT 0,
    memory     INTEGER NOT NULL DEFAULT 0,
    gpus       INTEGER NOT NULL DEFAULT 0,
    nodes      INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);
