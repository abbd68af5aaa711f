"""The `spawner` benchmark's Python half (gantry-bench runs it against its own gantryd).

Prints one JSON object:
- ``gantry_ready_ms``: start -> ready of a server through GantrySpawner and
  Gantry's local gate, one per run;
- ``local_ready_ms``: the same through JupyterHub's LocalProcessSpawner;
- ``py_submits_per_s``: the Python SDK's durable submits with 64 asyncio tasks.

Both Hubs run the same single-user command (JupyterHub's ``mocksu``, which
answers at once, so the figures are the spawners' own time).

    python spawn.py --user-profile P --service-profile Q [--runs 10] [--submits 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import gantry
import gantry.aio
from hub import Hub

# LocalProcessSpawner runs a server as the system user of the Hub user's
# name: the benchmark's Hub user is the user running it.
USER = getpass.getuser()


def ready_times(hub: Hub, runs: int) -> list[float]:
    """Start -> ready of one user's server, ``runs`` times (stopped between)."""
    times = []
    hub.api("POST", f"/users/{USER}")
    for _ in range(runs):
        started = time.monotonic()
        status, answer = hub.api("POST", f"/users/{USER}/server", {})
        if status not in (201, 202):
            raise RuntimeError(f"spawn refused: {status} {answer}")
        while not hub.server(USER).get("ready"):
            time.sleep(0.01)
        times.append((time.monotonic() - started) * 1000)
        hub.api("DELETE", f"/users/{USER}/server")
        while hub.server(USER):
            time.sleep(0.05)
    return times


def measure_hub(root: Path, profile: Path, runs: int, **settings: Any) -> list[float]:
    """Start a Hub with these settings; its servers' start -> ready times after one warm-up."""
    hub = Hub(root, profile, **settings)
    hub.start()
    try:
        ready_times(hub, 1)  # warm: the Hub's first spawn imports and connects
        return ready_times(hub, runs)
    finally:
        hub.stop()


async def submits(profile: Path, count: int, tasks: int = 64) -> float:
    """Durable submits per second with ``tasks`` asyncio tasks of one client."""
    async with gantry.aio.Client(gantry.Config.from_profile(profile)) as client:
        await client.submit(["true"], hold=True)  # connected and warm
        left = count

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await client.submit(["true"], hold=True, labels={"bench": "python"})

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        return count / (time.monotonic() - started)


def main() -> None:
    """Measure, and print the JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user-profile", type=Path, required=True)
    parser.add_argument("--service-profile", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--submits", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gantry_dir, local_dir = Path(tmp) / "gantry", Path(tmp) / "local"
        gantry_dir.mkdir()
        local_dir.mkdir()
        gantry_ready = measure_hub(gantry_dir, args.service_profile, args.runs)
        local_ready = measure_hub(
            local_dir,
            args.service_profile,
            args.runs,
            spawner_class="jupyterhub.spawner.LocalProcessSpawner",
        )
    per_s = asyncio.run(submits(args.user_profile, args.submits))
    print(
        json.dumps(
            {
                "gantry_ready_ms": gantry_ready,
                "local_ready_ms": local_ready,
                "py_submits_per_s": per_s,
            }
        )
    )


if __name__ == "__main__":
    main()
