"""HyperQueue peer for scripts/bench: N trivial `true` tasks on a LocalCluster
with one worker of CORES cores. Prints one JSON object. HyperQueue keeps no
journal here (its default), so its submits are not durable; Gantry's are.
Each task writes its stdout/stderr file, as Gantry's jobs do; they go to a
scratch directory (HyperQueue's default is the submitter's working
directory, which put 40,000 files into the repository once)."""
import json
import sys
import tempfile
import time

from hyperqueue import Job, LocalCluster
from hyperqueue.cluster import WorkerConfig


def main() -> None:
    tasks, cores = int(sys.argv[1]), int(sys.argv[2])
    with tempfile.TemporaryDirectory() as directory:
        with LocalCluster(directory) as cluster:
            cluster.start_worker(WorkerConfig(cores=cores))
            client = cluster.client()
            job = Job(default_workdir=directory)
            for _ in range(tasks):
                job.program(["true"])
            start = time.monotonic()
            submitted = client.submit(job)
            accepted = time.monotonic()
            client.wait_for_jobs([submitted])
            done = time.monotonic()
    print(json.dumps({"tasks": tasks, "submit_s": accepted - start, "total_s": done - start}))


if __name__ == "__main__":
    main()
