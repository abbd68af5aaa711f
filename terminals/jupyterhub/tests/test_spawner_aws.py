"""GantrySpawner on a cloud site: the AWS gate against moto, its machine played on this host.

The server's machine accepts no inbound connection; the Hub reaches the
server through Gantry's port forwarding (Hub → gantryd → the AWS gate → the
machine's agent → the server's loopback port), chosen by ``forward = "auto"``
because the site is elastic.
"""

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
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's endpoint: the server scripts/test starts, or one of our own."""
    given = os.environ.get("GANTRY_TEST_MOTO_URL")
    if given:
        yield given
        return
    state = tmp_path_factory.mktemp("moto")
    script = str(ROOT / "scripts" / "moto")
    port = "55599"
    started = subprocess.run([script, "start", str(state), port], check=True, capture_output=True)
    try:
        yield started.stdout.decode().strip()
    finally:
        subprocess.run([script, "stop", str(state)], check=False, capture_output=True)


@pytest.fixture(scope="module")
def on_aws(moto: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    running = Installation(tmp_path_factory.mktemp("gantry-aws"), moto=moto)
    try:
        yield running
    finally:
        running.stop()


def test_a_server_on_a_cloud_machine_is_reached_through_its_agent(
    on_aws: Installation, tmp_path: Path
) -> None:
    hub = Hub(tmp_path, on_aws.profile("service", "jupyterhub"), site="aws")
    hub.start()
    try:
        status, answer = hub.spawn("alice")
        assert status in (201, 202), answer
        server = hub.until_ready("alice", timeout=120)
        state = server["state"]
        assert state["forward_port"] and state["forward_port"] != state["server_port"], state
        assert hub.get("/user/alice/on/aws") == (200, "/user/alice/on/aws")
        with gantry.Client(on_aws.config("user", "alice")) as alice:
            (job,) = alice.list(labels={"jupyterhub.user": "alice"})
            assert until_running(alice, job.id).site == "aws"
            stop_until_cancelled(hub, "alice", alice, job.id)
    finally:
        hub.stop()
