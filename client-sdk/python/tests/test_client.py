"""The synchronous client against a real gantryd, scheduler and local gate."""

from __future__ import annotations

import hashlib
import pickle
import socket
import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest
import upper_server
from installation import Installation

import gantry
from gantry.v1 import common_pb2


def label() -> dict[str, str]:
    """A label unique to one test, to list only its jobs."""
    return {"test": uuid.uuid4().hex[:12]}


def test_a_job_runs_and_its_logs_and_exit_code_come_back(alice: gantry.Client) -> None:
    job = alice.submit(script="echo hello; echo oops >&2; exit 3", name="three")
    assert job.id > 0 and job.owner == "alice" and job.spec.name == "three"
    ended = alice.wait(job.id, timeout=60)
    assert ended.state == gantry.JobState.Value("JOB_STATE_FAILED")
    assert ended.exit_code == 3 and "exit code 3" in ended.reason
    assert gantry.state_name(ended.state) == "FAILED" and gantry.is_end_state(ended.state)
    assert b"".join(alice.logs(job.id)) == b"hello\n"
    assert b"".join(alice.logs(job.id, stream="stderr")) == b"oops\n"
    assert b"".join(alice.logs(job.id, offset=2)) == b"llo\n"


def test_every_spec_field_reaches_gantryd(alice: gantry.Client, workdir: Path) -> None:
    data = workdir / "data.txt"
    data.write_text("42\n")
    first = alice.submit(["true"])
    labels = label()
    job = alice.submit(
        script='mkdir out; cat in/data.txt >out/result.txt; echo -n "$GREETING" >>out/result.txt',
        name="fields",
        env={"GREETING": "hi"},
        cpus=1,
        memory="64MiB",
        gpus=0,
        nodes=1,
        tasks=1,
        tasks_per_node=1,
        walltime="10m",
        site="local",
        inputs={"in/data.txt": data},
        outputs=["out/*.txt"],
        labels=labels,
        priority=7,
        after=[first.id],
        hold=True,
        signal="USR1@30",
        retries=1,
    )
    spec = job.spec
    assert (spec.name, spec.env["GREETING"], spec.site, spec.priority) == (
        "fields",
        "hi",
        "local",
        7,
    )
    assert (spec.resources.cpus, spec.resources.memory, spec.resources.walltime) == (
        1,
        "64MiB",
        "10m",
    )
    assert list(spec.after) == [first.id] and spec.hold and spec.signal == "USR1@30"
    assert spec.retries == 1 and dict(spec.labels) == labels
    assert [(i.path, i.mode) for i in spec.inputs] == [("in/data.txt", data.stat().st_mode & 0o777)]
    assert job.held and job.state == gantry.JobState.Value("JOB_STATE_QUEUED")

    released = alice.release(job.id)
    assert not released.held
    ended = alice.wait(job.id, timeout=60)
    assert gantry.state_name(ended.state) == "COMPLETED", ended.reason
    assert list(ended.output_files) == ["out/result.txt"]
    written = alice.download_outputs(job.id, workdir / "back")
    assert written == [workdir / "back" / "out" / "result.txt"]
    assert written[0].read_text() == "42\nhi"


def test_arrays_run_every_task(alice: gantry.Client) -> None:
    array = alice.submit(script='echo "task $GANTRY_ARRAY_INDEX"', array="0-4")
    assert array.array.task_count == 5 and array.array.indices == "0-4"
    ended = alice.wait(array.id, timeout=60)
    assert gantry.state_name(ended.state) == "COMPLETED"
    task = alice.get(array.id, index=3)
    assert task.array_id == array.id and task.array_index == 3
    assert b"".join(alice.logs(task.id)) == b"task 3\n"
    tasks = list(alice.list(array_id=array.id))
    assert sorted(t.array_index for t in tasks) == [0, 1, 2, 3, 4]


def test_a_failed_dependency_fails_the_job_naming_it(alice: gantry.Client) -> None:
    failing = alice.submit(["false"])
    job = alice.submit(["true"], after=[failing.id])
    ended = alice.wait(job.id, timeout=60)
    assert gantry.state_name(ended.state) == "FAILED"
    assert str(failing.id) in ended.reason


def test_listing_pages_by_key_newest_first_with_filters(alice: gantry.Client) -> None:
    labels = label()
    ids = [alice.submit(["true"], hold=True, labels=labels).id for _ in range(7)]
    listed = list(alice.list(labels=labels, page_size=3))
    assert [j.id for j in listed] == sorted(ids, reverse=True)
    assert [j.id for j in alice.list(labels=labels, states=["queued"])] == sorted(ids, reverse=True)
    assert list(alice.list(labels=labels, states=[common_pb2.JOB_STATE_RUNNING])) == []
    with pytest.raises(ValueError, match=r"not a job state"):
        list(alice.list(states=["sleeping"]))
    for job_id in ids:
        assert gantry.state_name(alice.cancel(job_id, "done").state) == "CANCELLED"


def test_hold_release_cancel_and_a_wrong_state(alice: gantry.Client) -> None:
    job = alice.submit(["sleep", "60"], hold=True)
    assert alice.hold(job.id).held  # holding a held job changes nothing
    released = alice.release(job.id)
    assert not released.held
    cancelled = alice.cancel(job.id, "not needed")
    assert gantry.state_name(cancelled.state) == "CANCELLED"
    # Cancelling again answers with the end state; an ended job cannot be held.
    assert gantry.state_name(alice.cancel(job.id).state) == "CANCELLED"
    with pytest.raises(gantry.FailedPrecondition, match="only a QUEUED job") as refused:
        alice.hold(job.id)
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_errors_are_exceptions_with_the_servers_message_and_field(
    alice: gantry.Client, installation: Installation
) -> None:
    with pytest.raises(gantry.InvalidArgument) as invalid:
        alice.submit(["true"], memory="lots")
    assert invalid.value.field == "resources.memory"
    assert "lots" in str(invalid.value) or "memory" in str(invalid.value)
    with pytest.raises(gantry.InvalidArgument) as invalid:
        alice.submit(["true"], array="5-1")
    assert invalid.value.field == "array"
    with pytest.raises(gantry.NotFound, match="does not exist"):
        alice.get(10**12)
    with pytest.raises(gantry.PermissionDenied, match="on behalf of"):
        alice.submit(["true"], on_behalf_of="bob")
    with pytest.raises(ValueError, match="exactly one of argv and script"):
        alice.submit()
    with pytest.raises(TypeError, match="sequence of strings"):
        alice.submit("echo hi")
    with pytest.raises(gantry.GantryError, match=r"cannot read .*nothing\.txt"):
        alice.submit(["true"], inputs={"x": "/nonexistent/nothing.txt"})
    # A closed port is UNAVAILABLE, with the address in the message.
    closed = gantry.Config(
        address="127.0.0.1:1",
        ca=installation.pki / "ca.pem",
        cert=installation.pki / "user-alice.pem",
        key=installation.pki / "user-alice.key",
    )
    with (
        gantry.Client(closed) as nowhere,
        pytest.raises(gantry.Unavailable, match=r"127\.0\.0\.1:1"),
    ):
        nowhere.get(1)


def test_events_are_in_order_and_resume_from_a_sequence_number(alice: gantry.Client) -> None:
    job = alice.submit(["true"])
    alice.wait(job.id, timeout=60)
    events = list(alice.events([job.id]))
    assert gantry.state_name(events[0].to_state) == "QUEUED"
    assert gantry.state_name(events[-1].to_state) == "COMPLETED"
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert events[0].actor == "user/alice" and events[0].owner == "alice"
    rest = list(alice.events([job.id], after_seq=events[1].seq))
    assert [e.seq for e in rest] == [e.seq for e in events[2:]]


def test_following_events_and_logs_sees_a_job_to_its_end(alice: gantry.Client) -> None:
    job = alice.submit(script="echo one; sleep 0.5; echo two", hold=True)
    states: list[str] = []
    logs: list[bytes] = []

    def follow() -> None:
        logs.extend(alice.logs(job.id, follow=True))
        for event in alice.events([job.id], after_seq=job.last_event_seq, follow=True):
            states.append(gantry.state_name(event.to_state))
            if gantry.is_end_state(event.to_state):
                return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()  # before the job is released: it follows, not reads history
    time.sleep(0.3)
    alice.release(job.id)
    follower.join(timeout=60)
    assert not follower.is_alive(), f"still following after 60 s; saw {states}"
    assert b"".join(logs) == b"one\ntwo\n"
    assert states[-1] == "COMPLETED" and "RUNNING" in states


def test_wait_gives_up_at_its_timeout_with_the_job(alice: gantry.Client) -> None:
    job = alice.submit(["sleep", "60"])
    started = time.monotonic()
    with pytest.raises(gantry.WaitTimeout) as late:
        alice.wait(job.id, timeout=0.5)
    assert time.monotonic() - started < 10
    assert isinstance(late.value, TimeoutError)
    assert late.value.job is not None and late.value.job.id == job.id
    again = pickle.loads(pickle.dumps(late.value))
    assert (str(again), again.job) == (str(late.value), late.value.job)
    alice.cancel(job.id)


def test_a_submit_while_gantryd_is_down_is_retried_into_one_job(
    alice: gantry.Client, installation: Installation
) -> None:
    labels = label()
    installation.core.kill()
    restarter = threading.Timer(1.5, installation.restart_gantryd)
    restarter.start()
    try:
        job = alice.submit(["true"], labels=labels)
    finally:
        restarter.join()
    assert [j.id for j in alice.list(labels=labels)] == [job.id]
    assert gantry.state_name(alice.wait(job.id, timeout=60).state) == "COMPLETED"


def test_the_same_request_id_returns_the_first_job_even_after_a_crash(
    alice: gantry.Client, installation: Installation
) -> None:
    key = f"spawn-{uuid.uuid4()}"
    first = alice.submit(["sleep", "30"], request_id=key)
    installation.core.kill()
    installation.restart_gantryd()
    again = alice.submit(["sleep", "30"], request_id=key)
    assert again.id == first.id
    alice.cancel(first.id)


def test_wait_rides_out_a_gantryd_restart(alice: gantry.Client, installation: Installation) -> None:
    job = alice.submit(["sleep", "2"])
    waited: list[gantry.Job] = []
    waiter = threading.Thread(target=lambda: waited.append(alice.wait(job.id, timeout=60)))
    waiter.start()
    time.sleep(0.5)
    installation.core.kill()
    time.sleep(1.5)
    installation.restart_gantryd()
    waiter.join(timeout=90)
    assert waited and gantry.state_name(waited[0].state) == "COMPLETED", waited


def test_arguments_that_would_be_misread_are_refused(alice: gantry.Client, workdir: Path) -> None:
    # A str is a Sequence[str]: mypy cannot catch these.
    with pytest.raises(TypeError, match="outputs must be a sequence"):
        alice.submit(["true"], outputs="out/*.csv")
    with pytest.raises(TypeError, match="states must be a sequence"):
        list(alice.list(states="running"))
    job = alice.submit(script="mkdir out && echo x > out/a.txt", outputs=["out/*"])
    alice.wait(job.id, timeout=60)
    outside = workdir / "escape"
    (workdir / "dest").mkdir()
    (workdir / "dest" / "out").symlink_to(outside, target_is_directory=True)
    outside.mkdir()
    (outside / "a.txt").symlink_to(workdir / "target.txt")
    with pytest.raises(OSError):
        alice.download_outputs(job.id, workdir / "dest")
    assert not (workdir / "target.txt").exists()


def test_a_service_acts_for_a_user_who_alone_sees_the_job(
    hub: gantry.Client, alice: gantry.Client, bob: gantry.Client, installation: Installation
) -> None:
    job = hub.submit(["sleep", "30"], on_behalf_of="alice")
    assert (job.owner, job.submitted_by) == ("alice", "service/jupyterhub")
    assert alice.get(job.id).owner == "alice"
    first = next(iter(alice.events([job.id])))
    assert first.message == "submitted by service/jupyterhub on behalf of user/alice"
    with pytest.raises(gantry.NotFound):
        bob.get(job.id)
    with pytest.raises(gantry.NotFound):
        bob.cancel(job.id)
    assert all(j.owner == "bob" for j in bob.list())
    with pytest.raises(gantry.InvalidArgument) as nobody:
        hub.submit(["true"])
    assert nobody.value.field == "on_behalf_of"
    with gantry.Client(installation.config("service", "monitor")) as monitor:
        with pytest.raises(gantry.PermissionDenied, match="act_for_users"):
            list(monitor.list())
        with pytest.raises(gantry.PermissionDenied):
            monitor.submit(["true"], on_behalf_of="alice")
    assert gantry.state_name(hub.cancel(job.id, "server stopped").state) == "CANCELLED"


def test_sites_list_flavors_and_health(alice: gantry.Client) -> None:
    overview = alice.overview()
    assert overview.core.accepting_changes
    (site,) = alice.sites()
    assert (site.name, site.provider, site.healthy) == ("local", "local", True)
    flavor = site.flavors[0]
    assert flavor.capacity.cpus == 2 and flavor.available


def test_a_secret_reaches_the_job_and_no_answer(
    alice: gantry.Client, installation: Installation
) -> None:
    secret = f"tok-{uuid.uuid4().hex}"
    job = alice.submit(
        script='printf %s "$HUB_TOKEN" | sha256sum | cut -d" " -f1',
        secret_env={"HUB_TOKEN": secret},
    )
    assert dict(job.spec.secret_env) == {"HUB_TOKEN": ""}
    ended = alice.wait(job.id, timeout=60)
    assert gantry.state_name(ended.state) == "COMPLETED", ended.reason
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert b"".join(alice.logs(job.id)).decode() == digest + "\n"
    answers = [str(alice.get(job.id)), *(str(j) for j in alice.list()), *map(str, alice.events())]
    assert not [a for a in answers if secret in a]
    with pytest.raises(gantry.InvalidArgument) as twice:
        alice.submit(["true"], env={"X": "1"}, secret_env={"X": "2"})
    assert twice.value.field == "secret_env[X]"


def _printed_port(client: gantry.Client, job_id: int) -> int:
    """The port the upper-casing server of job ``job_id`` printed."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = b"".join(client.logs(job_id)).decode().strip()
        if text.isdigit():
            return int(text)
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} printed no port")


def _ask(address: tuple[str, int], question: bytes) -> bytes:
    """Send ``question`` to ``address``, half-close, and read the answer to its end."""
    with socket.create_connection(address, timeout=60) as conn:
        conn.sendall(question)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while piece := conn.recv(65536):
            answer += piece
        return answer


def test_forward_reaches_a_server_in_a_running_job_and_only_its_owners(
    alice: gantry.Client, bob: gantry.Client, caplog: pytest.LogCaptureFixture
) -> None:
    job = alice.submit(upper_server.ARGV)
    port = _printed_port(alice, job.id)
    big = bytes(ord("a") + i % 26 for i in range(1 << 20))
    with alice.forward(job.id, port) as forward:
        assert forward.address[0] == "127.0.0.1" and forward.local_port > 0
        assert _ask(forward.address, big) == big.upper()
        assert _ask(forward.address, b"again") == b"AGAIN"
    # Bob's connections are refused: the job is not his to see.
    with bob.forward(job.id, port) as forward, caplog.at_level("WARNING", "gantry.forward"):
        assert _ask(forward.address, b"hello") == b""
        assert any("does not exist" in r.getMessage() for r in caplog.records), caplog.text
    alice.cancel(job.id)
