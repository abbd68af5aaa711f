"""The package as users get it: a wheel built here, installed where no repository is."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from installation import Installation

SDK = Path(__file__).resolve().parents[1]


def test_a_built_wheel_installs_and_works_without_the_repository(
    installation: Installation, tmp_path: Path
) -> None:
    # Built from a copy, as from an sdist: nothing of the checkout leaks in or is left behind.
    source = tmp_path / "source"
    shutil.copytree(
        SDK, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)]
    subprocess.run(build, check=True, capture_output=True)
    (wheel,) = dist.glob("gantry_client-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True)
    program = (
        "import gantry, gantry.v1.gate_pb2\n"
        "with gantry.Client() as c:\n"
        "    job = c.wait(c.submit(['echo', 'from a wheel']).id, timeout=60)\n"
        "    print(gantry.__file__, gantry.state_name(job.state), b''.join(c.logs(job.id)))\n"
    )
    env = {"PATH": os.environ["PATH"], "GANTRY_PROFILE": str(installation.profile("user", "bob"))}
    ran = subprocess.run(
        [str(venv / "bin" / "python"), "-c", program],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    where, state, logs = ran.stdout.split(" ", 2)
    assert where.startswith(str(venv)) and state == "COMPLETED"
    assert logs.strip() == "b'from a wheel\\n'"
    # The wheel carries the typing marker and the stubs.
    listing = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(wheel)], check=True, capture_output=True
    ).stdout.decode()
    assert "gantry/py.typed" in listing and "gantry/v1/client_pb2.pyi" in listing
