"""The asyncio client against the same real installation."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import upper_server
from installation import Installation

import gantry
import gantry.aio


async def test_a_job_runs_and_its_logs_come_back(aio_alice: gantry.aio.Client) -> None:
    job = await aio_alice.submit(script="echo hello; exit 4")
    ended = await aio_alice.wait(job.id, timeout=60)
    assert gantry.state_name(ended.state) == "FAILED" and ended.exit_code == 4
    assert b"".join([c async for c in aio_alice.logs(job.id)]) == b"hello\n"
    followed = [c async for c in aio_alice.logs(job.id, follow=True)]
    assert b"".join(followed) == b"hello\n"


async def test_inputs_outputs_and_events(aio_alice: gantry.aio.Client, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("abc")
    job = await aio_alice.submit(
        script="mkdir -p out/sub && tr a-z A-Z <in.txt >out/sub/up.txt",
        inputs={"in.txt": source},
        outputs=["out/**"],
    )
    ended = await aio_alice.wait(job.id, timeout=60)
    assert gantry.state_name(ended.state) == "COMPLETED", ended.reason
    written = await aio_alice.download_outputs(job.id, tmp_path / "back")
    assert [p.read_text() for p in written] == ["ABC"]
    events = [e async for e in aio_alice.events([job.id])]
    assert gantry.state_name(events[-1].to_state) == "COMPLETED"
    rest = [e async for e in aio_alice.events([job.id], after_seq=events[0].seq)]
    assert rest == events[1:]


async def test_sixty_four_concurrent_submits_make_sixty_four_jobs(
    aio_alice: gantry.aio.Client,
) -> None:
    labels = {"test": uuid.uuid4().hex[:12]}
    jobs = await asyncio.gather(
        *(aio_alice.submit(["true"], hold=True, labels=labels) for _ in range(64))
    )
    assert len({j.id for j in jobs}) == 64
    listed = [j.id async for j in aio_alice.list(labels=labels, page_size=10)]
    assert listed == sorted((j.id for j in jobs), reverse=True)
    for job in jobs:
        await aio_alice.cancel(job.id)


async def test_errors_hold_and_timeouts(aio_alice: gantry.aio.Client) -> None:
    with pytest.raises(gantry.InvalidArgument) as invalid:
        await aio_alice.submit(["true"], walltime="forever")
    assert invalid.value.field == "resources.walltime"
    with pytest.raises(gantry.NotFound):
        await aio_alice.get(10**12)
    with pytest.raises(gantry.GantryError, match="cannot read"):
        await aio_alice.submit(["true"], inputs={"x": "/nonexistent/file"})
    job = await aio_alice.submit(["sleep", "60"], hold=True)
    assert (await aio_alice.hold(job.id)).held
    assert not (await aio_alice.release(job.id)).held
    with pytest.raises(gantry.WaitTimeout):
        await aio_alice.wait(job.id, timeout=0.3)
    assert gantry.state_name((await aio_alice.cancel(job.id)).state) == "CANCELLED"


async def test_a_service_submits_for_a_user(installation: Installation) -> None:
    async with (
        gantry.aio.Client(installation.config("service", "jupyterhub")) as hub,
        gantry.aio.Client(installation.config("user", "bob")) as bob,
    ):
        job = await hub.submit(["true"], on_behalf_of="alice", request_id="hub-alice-1")
        again = await hub.submit(["true"], on_behalf_of="alice", request_id="hub-alice-1")
        assert again.id == job.id and job.owner == "alice"
        with pytest.raises(gantry.NotFound):
            await bob.get(job.id)
        (site,) = await hub.sites()
        assert site.name == "local"


async def test_forward_reaches_a_server_in_a_running_job(aio_alice: gantry.aio.Client) -> None:
    job = await aio_alice.submit(upper_server.ARGV)
    port = 0
    for _ in range(600):
        text = b"".join([c async for c in aio_alice.logs(job.id)]).decode().strip()
        if text.isdigit():
            port = int(text)
            break
        await asyncio.sleep(0.1)
    assert port, "the job printed its port"
    async with await aio_alice.forward(job.id, port) as forward:
        reader, writer = await asyncio.open_connection(*forward.address)
        writer.write(b"through asyncio")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 60) == b"THROUGH ASYNCIO"
        writer.close()
    # A port nobody listens on: the connection closes without a byte.
    async with await aio_alice.forward(job.id, 1) as forward:
        reader, writer = await asyncio.open_connection(*forward.address)
        assert await asyncio.wait_for(reader.read(), 60) == b""
        writer.close()
    await aio_alice.cancel(job.id)
