"""GantrySpawner on a Slurm site: a real JupyterHub, gantryd, the Slurm gate, a one-node Slurm."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import gantry
import pytest
from hub import ROOT, Hub
from installation import Installation
from test_spawner import stop_until_cancelled, until_running


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The test Slurm cluster scripts/test starts, or one of our own."""
    given = os.environ.get("GANTRY_TEST_SLURM_CONF")
    if given:
        yield Path(given)
        return
    state = tmp_path_factory.mktemp("slurm")
    script = str(ROOT / "scripts" / "slurm")
    started = subprocess.run([script, "start", str(state)], check=True, capture_output=True)
    try:
        yield Path(started.stdout.decode().strip())
    finally:
        subprocess.run([script, "stop", str(state)], check=False, capture_output=True)


@pytest.fixture(scope="module")
def on_slurm(slurm_conf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    running = Installation(tmp_path_factory.mktemp("gantry-slurm"), slurm_conf=slurm_conf)
    try:
        yield running
    finally:
        running.stop()


def test_a_server_starts_and_stops_on_slurm(on_slurm: Installation, tmp_path: Path) -> None:
    hub = Hub(tmp_path, on_slurm.profile("service", "jupyterhub"), site="slurm")
    hub.start()
    try:
        status, answer = hub.spawn("alice")
        assert status in (201, 202), answer
        hub.until_ready("alice", timeout=120)
        assert hub.get("/user/alice/on/slurm") == (200, "/user/alice/on/slurm")
        with gantry.Client(on_slurm.config("user", "alice")) as alice:
            (job,) = alice.list(labels={"jupyterhub.user": "alice"})
            assert until_running(alice, job.id).site == "slurm"
            stop_until_cancelled(hub, "alice", alice, job.id)
    finally:
        hub.stop()
