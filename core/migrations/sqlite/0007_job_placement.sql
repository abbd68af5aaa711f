-- Where a job runs, as people know it (client.proto, Job.flavor and
-- Job.native_id): its partition's flavor (a Slurm partition, an instance
-- type) and the provider's own id of its run (a Slurm job id, a pid).
ALTER TABLE jobs ADD COLUMN flavor TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN native_id TEXT NOT NULL DEFAULT '';
