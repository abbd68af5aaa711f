-- How many times a job went back to the queue because what ran it was lost
-- (client.proto, Job.requeues; bounded by JobSpec.retries).
ALTER TABLE jobs ADD COLUMN requeues BIGINT  NOT NULL DEFAULT 0;
