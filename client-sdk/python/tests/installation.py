"""A real Gantry on loopback for the SDK's tests: gantryd, gantry-sched and gantry-gate-local.

The binaries come from ``GANTRY_BIN_DIR`` or the workspace's ``target/debug``
(``scripts/test`` builds them first). The PKI is made with ``gantry pki``, as
an operator would; the processes speak mTLS on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import gantry

ROOT = Path(__file__).resolve().parents[3]
INSTALLATION = "pytest"
USERS = ("alice", "bob", "root")
SERVICES = {"jupyterhub": True, "monitor": False}
#: The AMI the AWS gate's test machines boot (one moto knows).
TEST_IMAGE = "ami-1e749f67"
#: moto's fake credentials, for the AWS gate.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


def bin_dir() -> Path:
    """Where the Gantry binaries are."""
    found = Path(os.environ.get("GANTRY_BIN_DIR") or ROOT / "target" / "debug")
    if not (found / "gantryd").exists():
        raise RuntimeError(
            f"no gantryd in {found}: build the workspace (cargo build --workspace --bins) "
            "or set GANTRY_BIN_DIR"
        )
    return found


class Process:
    """One binary of the installation, logging to a file, with its address once ready."""

    def __init__(
        self, name: str, args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name, self.args, self.log = name, args, log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready: Path, timeout: float = 30.0) -> str:
        """Start it and wait until it writes its address to ``ready``."""
        ready.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(bin_dir() / self.name), *self.args, "--ready-file", str(ready)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=None if self.env is None else {**os.environ, **self.env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready.exists() and ready.read_text().strip():
                return ready.read_text().strip()
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not become ready; its log:\n{self.tail()}")

    def terminate(self) -> None:
        """SIGTERM it and wait for its end."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        """SIGKILL it (a crash)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def tail(self) -> str:
        """The end of its log."""
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


class Installation:
    """gantryd, the scheduler and a gate, with users alice, bob, root (admin).

    The gate is the local one; with ``slurm_conf`` the Slurm gate on that
    cluster; with ``moto`` (an endpoint of moto's server as EC2) the AWS gate,
    whose machines ``gantry-machine-player`` plays on this host, as the Rust
    tests do (moto runs nothing on its instances).

    Services: ``jupyterhub`` may act for users, ``monitor`` may not.
    """

    def __init__(
        self,
        root: Path,
        cpus: int = 2,
        slurm_conf: Path | None = None,
        moto: str | None = None,
    ) -> None:
        self.root = root
        #: For tests that share the installation: the last job id before theirs.
        self.last_job_id = 0
        self.pki = root / "pki"
        # moto's instances are one pool: each installation tags its own.
        self.installation = f"pytest-{uuid.uuid4().hex[:8]}" if moto else INSTALLATION
        gantry_cli = str(bin_dir() / "gantry")
        pki = ["pki", "--json"]
        subprocess.run(
            [gantry_cli, *pki, "init", "--dir", str(self.pki), "--installation", self.installation],
            check=True,
            capture_output=True,
        )
        for user in USERS:
            issue = [gantry_cli, *pki, "issue", "--dir", str(self.pki), "user", user]
            subprocess.run(issue, check=True, capture_output=True)
        for service in SERVICES:
            issue = [gantry_cli, *pki, "issue", "--dir", str(self.pki), "service", service]
            subprocess.run(issue, check=True, capture_output=True)
        logs = root / "logs"
        logs.mkdir()
        common = ["--listen", "127.0.0.1:0", "--pki-dir", str(self.pki)]
        self.sched = Process("gantry-sched", common, logs / "sched.log")
        sched_addr = self.sched.start(root / "sched.addr")
        #: The site's name: ``local``, ``slurm`` on a Slurm cluster, ``aws`` on moto.
        self.site = "aws" if moto else "slurm" if slurm_conf else "local"
        gate_args = [*common, "--name", self.site, "--work-dir", str(root / self.site)]
        self.player: Process | None = None
        if moto is not None:
            for kind in ("gate", "agent-issuer"):
                issue = [gantry_cli, *pki, "issue", "--dir", str(self.pki), kind, "aws"]
                subprocess.run(issue, check=True, capture_output=True)
            aws = [
                *common,
                "--name",
                "aws",
                "--agent-listen",
                f"127.0.0.1:{free_port()}",
                "--state-dir",
                str(root / "aws-state"),
                "--instance-types",
                "t3.micro,t3.small",
                "--image",
                TEST_IMAGE,
                "--endpoint-url",
                moto,
            ]
            self.gate = Process("gantry-gate-aws", aws, logs / "gate.log", env=AWS_ENV)
            player = ["--endpoint", moto, "--installation", self.installation, "--dir", str(root)]
            self.player = Process("gantry-machine-player", player, logs / "machines.log")
            self.player.start(root / "player.ready")
        elif slurm_conf is None:
            self.gate = Process(
                "gantry-gate-local",
                # The tests' users (alice, bob) have no Unix accounts.
                [*gate_args, "--cpus", str(cpus), "--run-as", "gate"],
                logs / "gate.log",
            )
        else:
            issue = [gantry_cli, *pki, "issue", "--dir", str(self.pki), "gate", "slurm"]
            subprocess.run(issue, check=True, capture_output=True)
            slurm = [*gate_args, "--slurm-conf", str(slurm_conf), "--poll", "1", "--run-as", "gate"]
            self.gate = Process("gantry-gate-slurm", slurm, logs / "gate.log")
        gate_addr = self.gate.start(root / "gate.addr")
        config = root / "gantryd.toml"
        services = "".join(
            f'[[services]]\nname = "{name}"\nact_for_users = {str(acts).lower()}\n'
            for name, acts in SERVICES.items()
        )
        config.write_text(
            f'installation = "{self.installation}"\n'
            f'listen = "127.0.0.1:0"\nstate_dir = "{root / "core"}"\nadmins = ["root"]\n'
            f'[tls]\nca = "{self.pki / "ca.pem"}"\ncert = "{self.pki / "core.pem"}"\n'
            f'key = "{self.pki / "core.key"}"\n'
            f'[scheduler]\naddress = "https://{sched_addr}"\n'
            f'[[gates]]\nname = "{self.site}"\naddress = "https://{gate_addr}"\n' + services
        )
        self.core = Process("gantryd", ["--config", str(config)], logs / "gantryd.log")
        self.address = self.core.start(root / "gantryd.addr")

    def restart_gantryd(self) -> None:
        """Start gantryd again on its address (after :meth:`Process.kill`)."""
        self.core.args = [*self.core.args[:2], "--listen", self.address]
        self.core.start(self.root / "gantryd.addr")

    def config(self, kind: str, name: str) -> gantry.Config:
        """The client configuration of identity ``kind/name`` (``user``, ``service``)."""
        return gantry.Config(
            address=self.address,
            ca=self.pki / "ca.pem",
            cert=self.pki / f"{kind}-{name}.pem",
            key=self.pki / f"{kind}-{name}.key",
        )

    def profile(self, kind: str, name: str) -> Path:
        """A profile file for ``kind/name``, as ``GANTRY_PROFILE`` names one."""
        path = self.root / f"{kind}-{name}.toml"
        path.write_text(
            f'address = "https://{self.address}"\nca = "pki/ca.pem"\n'
            f'cert = "pki/{kind}-{name}.pem"\nkey = "pki/{kind}-{name}.key"\n'
        )
        return path

    def stop(self) -> None:
        """Stop every process (the machine player ends the machines it played)."""
        for process in (self.core, self.gate, self.sched):
            process.kill()
        if self.player is not None:
            self.player.terminate()


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
