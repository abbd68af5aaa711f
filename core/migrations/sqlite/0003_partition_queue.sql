-- What a partition's gate queues beyond its capacity (gate.proto,
-- Partition.queue): placements may fill capacity + queue.
ALTER TABLE partitions ADD COLUMN queue_cpus   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE partitions ADD COLUMN queue_memory INTEGER NOT NULL DEFAULT 0;
ALTER TABLE partitions ADD COLUMN queue_gpus   INTEGER NOT NULL DEFAULT 0;
