-- What a partition's gate queues beyond its capacity (gate.proto,
-- Partition.queue): placements may fill capacity + queue.
ALTER TABLE partitions ADD COLUMN queue_cpus   BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE partitions ADD COLUMN queue_memory BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE partitions ADD COLUMN queue_gpus   BIGINT  NOT NULL DEFAULT 0;
