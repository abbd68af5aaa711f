-- The values of a job's secret environment variables (client.proto,
-- JobSpec.secret_env), kept apart from its spec (which holds their names
-- only) and deleted in the commit that ends the job. `env` is an encoded
-- gantry.v1.JobSpec with only `secret_env` set.
CREATE TABLE job_secrets (
    job_id BIGINT PRIMARY KEY,
    env    BYTEA  NOT NULL
);
