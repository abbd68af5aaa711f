"""GantrySpawner in a real JupyterHub, against a real gantryd, scheduler and local gate."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gantry
import pytest
from hub import Hub
from installation import Installation


def files_containing(root: Path, needle: str) -> list[Path]:
    data = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


def jobs_of(installation: Installation, user: str) -> list[gantry.Job]:
    """The Hub's jobs for ``user`` since the test began, as that user sees them."""
    with gantry.Client(installation.config("user", user)) as client:
        jobs = client.list(labels={"jupyterhub.user": user})
        return [j for j in jobs if j.id > installation.last_job_id]


def until(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what}: {last!r}")


def until_running(client: gantry.Client, job_id: int) -> gantry.Job:
    """Job ``job_id`` once gantryd says it is RUNNING.

    The server can answer the Hub before gantryd hears from the gate that its job runs.
    """

    def running() -> gantry.Job | None:
        job = client.get(job_id)
        return job if gantry.state_name(job.state) == "RUNNING" else None

    job: gantry.Job = until(f"job {job_id} to be RUNNING", running)
    return job


def stop_until_cancelled(hub: Hub, user: str, client: gantry.Client, job_id: int) -> None:
    """Stop USER's server through the Hub; its Gantry job must end CANCELLED."""
    status, _ = hub.api("DELETE", f"/users/{user}/server")
    assert status in (202, 204)
    ended = until("the job to end", lambda: gantry.is_end_state(client.get(job_id).state), 60)
    assert ended and gantry.state_name(client.get(job_id).state) == "CANCELLED"


@pytest.fixture(autouse=True)
def fresh(installation: Installation) -> None:
    """Mark where this test's jobs begin (the installation outlives tests)."""
    with gantry.Client(installation.config("user", "root")) as root:
        installation.last_job_id = root.submit(["true"]).id


@pytest.fixture
def hub(installation: Installation, tmp_path: Path) -> Iterator[Hub]:
    running = Hub(tmp_path, installation.profile("service", "jupyterhub"))
    running.start()
    try:
        yield running
    finally:
        # Stop the servers (cancelling their jobs) before the Hub, which leaves them running.
        for user in ("alice", "bob"):
            if running.proc is not None and running.proc.poll() is None:
                running.api("DELETE", f"/users/{user}/server")
        running.stop()


def test_a_server_is_a_job_of_its_user_and_answers_through_the_proxy(
    hub: Hub, installation: Installation
) -> None:
    status, answer = hub.spawn("alice")
    assert status in (201, 202), answer
    hub.until_ready("alice")
    status, body = hub.get("/user/alice/some/path")
    assert status == 200 and body == "/user/alice/some/path"
    (job,) = jobs_of(installation, "alice")
    assert (job.owner, job.submitted_by) == ("alice", "service/jupyterhub")
    with gantry.Client(installation.config("user", "alice")) as alice:
        until_running(alice, job.id)
    # The Hub's token reached the server as a secret: its name is all Gantry shows.
    status, env = hub.get("/user/alice/env")
    token = json.loads(env)["JUPYTERHUB_API_TOKEN"]
    assert token and dict(job.spec.secret_env) == {"JUPYTERHUB_API_TOKEN": "", "JPY_API_TOKEN": ""}
    assert token not in str(job) and "JUPYTERHUB_API_TOKEN" not in job.spec.env

    status, _ = hub.api("DELETE", "/users/alice/server")
    assert status in (202, 204)
    ended = until(
        "the job to end",
        lambda: [j for j in jobs_of(installation, "alice") if gantry.is_end_state(j.state)],
    )
    assert gantry.state_name(ended[0].state) == "CANCELLED"
    assert not hub.server("alice")
    # Once the job ended, gantryd keeps the token nowhere (SQLite's write-ahead
    # log is emptied beside its writer, a moment after the end).
    core = installation.root / "core"
    until("no file of gantryd to hold the token", lambda: not files_containing(core, token), 10)


def test_a_real_jupyter_server_answers(installation: Installation, tmp_path: Path) -> None:
    singleuser = str(Path(sys.executable).parent / "jupyterhub-singleuser")
    hub = Hub(
        tmp_path, installation.profile("service", "jupyterhub"), cmd=[singleuser, "--allow-root"]
    )
    hub.start()
    try:
        status, answer = hub.spawn("bob")
        assert status in (201, 202), answer
        hub.until_ready("bob", timeout=120)
        status, body = hub.get("/user/bob/api")
        assert status == 200 and "version" in json.loads(body), body
    finally:
        hub.api("DELETE", "/users/bob/server")
        hub.stop()


def test_a_restarted_hub_finds_its_running_server_again(
    hub: Hub, installation: Installation
) -> None:
    hub.spawn("alice")
    hub.until_ready("alice")
    hub.stop()
    hub.start()
    assert hub.until_ready("alice")
    assert hub.get("/user/alice/x")[0] == 200
    running = [j for j in jobs_of(installation, "alice") if not gantry.is_end_state(j.state)]
    assert len(running) == 1, running


def test_a_server_reached_through_gantrys_port_forwarding_survives_a_hub_restart(
    installation: Installation, tmp_path: Path
) -> None:
    # As on a cloud site (`forward = "auto"` there): the Hub reaches the
    # server through gantryd and the gate, never at the node's address.
    hub = Hub(tmp_path, installation.profile("service", "jupyterhub"), forward="always")
    hub.start()
    try:
        hub.spawn("alice")
        server = hub.until_ready("alice")
        state = server["state"]
        assert state["forward_port"] and state["forward_port"] != state["server_port"], state
        assert hub.get("/user/alice/through")[0] == 200
        hub.stop()
        hub.start()
        assert hub.until_ready("alice")
        assert hub.get("/user/alice/again") == (200, "/user/alice/again")
        (job,) = jobs_of(installation, "alice")
        with gantry.Client(installation.config("user", "alice")) as alice:
            until_running(alice, job.id)
        hub.api("DELETE", "/users/alice/server")

        def ended() -> bool:
            return gantry.is_end_state(jobs_of(installation, "alice")[0].state)

        until("the job to end", ended)
    finally:
        hub.stop()


def test_a_hub_restarted_while_a_spawn_waits_never_runs_two_jobs(
    hub: Hub, installation: Installation
) -> None:
    # The local gate offers 2 CPUs: take them, so alice's server waits.
    with gantry.Client(installation.config("user", "root")) as root:
        blocker = root.submit(["sleep", "300"], cpus=2)
        until(
            "the blocker to run", lambda: gantry.state_name(root.get(blocker.id).state) == "RUNNING"
        )
        hub.spawn("alice")
        until("alice's job", lambda: jobs_of(installation, "alice"))
        # The Hub dies before start() returned: it never saved the job's id.
        assert hub.proc is not None
        hub.proc.kill()
        hub.proc.wait()
        hub.start()
        hub.spawn("alice")
        root.cancel(blocker.id)
        hub.until_ready("alice")
    # The lost spawn's job carried the old token: it was replaced, never run beside the new one.
    first, *others = sorted(jobs_of(installation, "alice"), key=lambda j: j.id)
    live = [j for j in others if not gantry.is_end_state(j.state)]
    assert len(live) == 1 and len(others) == 1, others
    assert gantry.state_name(first.state) == "CANCELLED"
    assert first.start_time_ms == 0, "the replaced job never ran"


def test_a_spawn_no_site_can_run_fails_fast_saying_why(
    hub: Hub, installation: Installation
) -> None:
    started = time.monotonic()
    hub.spawn("alice", {"memory": "100T"})
    failed = until("the spawn to fail", lambda: not hub.server("alice"))
    assert failed and time.monotonic() - started < 30
    # gantryd refuses it at submit, saying what is too big.
    said = "no site can ever run this job: it asks for 100 TiB of memory"
    assert said in hub.log.read_text()
    assert jobs_of(installation, "alice") == []


def test_each_user_owns_their_server_and_sees_only_it(hub: Hub, installation: Installation) -> None:
    for user in ("alice", "bob"):
        hub.spawn(user)
    for user in ("alice", "bob"):
        hub.until_ready(user)
    (alices,) = jobs_of(installation, "alice")
    (bobs,) = jobs_of(installation, "bob")
    assert (alices.owner, bobs.owner) == ("alice", "bob")
    with gantry.Client(installation.config("user", "alice")) as alice:
        with pytest.raises(gantry.NotFound):
            alice.get(bobs.id)
        with pytest.raises(gantry.NotFound):
            alice.cancel(bobs.id)


def test_a_waiting_spawn_the_user_cancels_cancels_its_job(
    hub: Hub, installation: Installation
) -> None:
    with gantry.Client(installation.config("user", "root")) as root:
        blocker = root.submit(["sleep", "300"], cpus=2)
        try:
            # Servers of earlier tests may still be stopping: until the blocker holds every CPU,
            # alice's smaller job could be backfilled beside them.
            until_running(root, blocker.id)
            hub.spawn("alice")
            (job,) = until("alice's job", lambda: jobs_of(installation, "alice"))
            assert gantry.state_name(job.state) == "QUEUED"
            status, _ = hub.api("DELETE", "/users/alice/server")
            assert status in (202, 204)
            until("the spawn to go", lambda: not hub.server("alice"))
            ended = until(
                "the job to be cancelled",
                lambda: [j for j in jobs_of(installation, "alice") if gantry.is_end_state(j.state)],
            )
            assert gantry.state_name(ended[0].state) == "CANCELLED"
        finally:
            root.cancel(blocker.id)


def test_the_options_form_offers_gantrys_sites_and_gantry_checks_the_choice(
    hub: Hub, installation: Installation
) -> None:
    from gantry_jupyterhub.form import options_form, user_options

    with gantry.Client(installation.config("service", "jupyterhub")) as client:
        form = options_form(client.sites(), {"site": "local", "cpus": 1})
    assert '<option value="local" selected>' in form and "2 CPUs" in form
    assert 'name="memory"' in form and 'name="walltime"' in form
    assert user_options({"site": ["local"], "cpus": ["2"], "memory": [""]}) == {
        "site": "local",
        "cpus": 2,
    }
    with pytest.raises(ValueError, match="whole number"):
        user_options({"cpus": ["many"]})
    # Fields of a form an admin added pass through for their own code.
    assert user_options({"image": ["x"]}) == {"image": "x"}
    # A choice gantryd refuses fails the spawn with gantryd's words.
    hub.spawn("alice", {"memory": "lots"})
    until("the spawn to fail", lambda: not hub.server("alice"))
    assert 'resources.memory: "lots" is not a size' in hub.log.read_text()
    assert jobs_of(installation, "alice") == []
