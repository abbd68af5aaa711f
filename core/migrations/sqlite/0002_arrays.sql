-- Job arrays (`gantry submit --array 0-99`): the array as a whole; each task
-- is a job of its own whose array_id is the array's id.

CREATE TABLE arrays (
    id                INTEGER PRIMARY KEY,   -- from the job id sequence; no job has it
    owner             TEXT    NOT NULL,
    submitted_by      TEXT    NOT NULL DEFAULT '',
    spec              BLOB    NOT NULL,      -- encoded gantry.v1.JobSpec, with `array`
    task_count        INTEGER NOT NULL,
    first_task_id     INTEGER NOT NULL,      -- tasks have consecutive ids in index order
    submit_ms         INTEGER NOT NULL,
    client_request_id TEXT
);
CREATE UNIQUE INDEX arrays_by_request ON arrays (owner, client_request_id) WHERE client_request_id IS NOT NULL;
CREATE INDEX arrays_by_owner ON arrays (owner, id);

ALTER TABLE jobs ADD COLUMN array_id    INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN array_index INTEGER NOT NULL DEFAULT 0;
-- Counts per state of one array (covering), and listings without tasks.
CREATE INDEX jobs_by_array ON jobs (array_id, state) WHERE array_id <> 0;
CREATE INDEX jobs_single_by_owner ON jobs (owner, id) WHERE array_id = 0;
