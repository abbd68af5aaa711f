-- How many times a job went back to the queue because what ran it was lost
-- (client.proto, Job.requeues; bounded by JobSpec.retries).
ALTER TABLE jobs ADD COLUMN requeues INTEGER NOT NULL DEFAULT 0;
