-- gantryd's schema, version 1, for PostgreSQL: the same tables as
-- migrations/sqlite/0001_init.sql, with PostgreSQL's types. Job states are
-- gantry.v1.JobState numbers.

CREATE TABLE jobs (
    id                BIGINT  PRIMARY KEY,
    owner             TEXT    NOT NULL,
    submitted_by      TEXT    NOT NULL DEFAULT '',
    name              TEXT    NOT NULL,
    spec              BYTEA   NOT NULL,   -- encoded gantry.v1.JobSpec, defaults filled in
    state             BIGINT  NOT NULL,
    reason            TEXT    NOT NULL DEFAULT '',
    exit_code         BIGINT,
    priority          BIGINT  NOT NULL,
    cpus              BIGINT  NOT NULL,
    memory            BIGINT  NOT NULL,
    gpus              BIGINT  NOT NULL,
    nodes             BIGINT  NOT NULL,
    walltime          BIGINT  NOT NULL,   -- seconds, 0 = none
    req_site          TEXT    NOT NULL,   -- '' = any
    site              TEXT    NOT NULL DEFAULT '',
    partition_id      TEXT    NOT NULL DEFAULT '',
    attempt_id        TEXT    NOT NULL DEFAULT '',
    held              BIGINT  NOT NULL DEFAULT 0,
    deps_pending      BIGINT  NOT NULL DEFAULT 0,
    client_request_id TEXT,
    submit_ms         BIGINT  NOT NULL,
    placed_ms         BIGINT  NOT NULL DEFAULT 0,
    start_ms          BIGINT  NOT NULL DEFAULT 0,
    end_ms            BIGINT  NOT NULL DEFAULT 0,
    last_seq          BIGINT  NOT NULL,
    outputs           TEXT    NOT NULL DEFAULT ''  -- stored output paths, one per line
);
CREATE UNIQUE INDEX jobs_by_request ON jobs (owner, client_request_id) WHERE client_request_id IS NOT NULL;
CREATE INDEX jobs_by_owner ON jobs (owner, id);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_attempt ON jobs (attempt_id) WHERE attempt_id <> '';

CREATE TABLE job_labels (
    job_id BIGINT  NOT NULL,
    key    TEXT    NOT NULL,
    value  TEXT    NOT NULL,
    PRIMARY KEY (job_id, key)
);
CREATE INDEX job_labels_by_value ON job_labels (key, value, job_id);

-- job_id may start only after after_id COMPLETED.
CREATE TABLE job_deps (
    after_id BIGINT  NOT NULL,
    job_id   BIGINT  NOT NULL,
    PRIMARY KEY (after_id, job_id)
);

-- The append-only history; seq is the global change sequence.
CREATE TABLE events (
    seq        BIGINT  PRIMARY KEY,
    job_id     BIGINT  NOT NULL,
    owner      TEXT    NOT NULL,
    time_ms    BIGINT  NOT NULL,
    from_state BIGINT  NOT NULL,
    to_state   BIGINT  NOT NULL,
    actor      TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    exit_code  BIGINT
);
CREATE INDEX events_by_job ON events (job_id, seq);

-- Compute provisioned (or being provisioned) on gates. State numbers are
-- gantry.v1.PartitionState. A row is written before the gate is asked.
CREATE TABLE partitions (
    id         TEXT    PRIMARY KEY,
    site       TEXT    NOT NULL,
    flavor     TEXT    NOT NULL,
    state      BIGINT  NOT NULL,
    message    TEXT    NOT NULL DEFAULT '',
    cpus       BIGINT  NOT NULL DEFAULT 0,
    memory     BIGINT  NOT NULL DEFAULT 0,
    gpus       BIGINT  NOT NULL DEFAULT 0,
    nodes      BIGINT  NOT NULL DEFAULT 0,
    created_ms BIGINT  NOT NULL
);
