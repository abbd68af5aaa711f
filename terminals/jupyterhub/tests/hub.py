"""A real JupyterHub for the spawner's tests: GantrySpawner against a real Gantry.

JupyterHub runs as its own process with configurable-http-proxy (from npm);
the tests drive it through its REST API with a service token, as an admin
tool would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from installation import free_port

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "gantry-spawner-test-token"
MOCK_SERVER = [sys.executable, "-m", "jupyterhub.tests.mocksu"]


def proxy_command() -> str:
    """configurable-http-proxy, as scripts/python-env installs it."""
    found = os.environ.get("GANTRY_CHP") or str(
        ROOT / "target" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
    )
    if not Path(found).exists():
        raise RuntimeError(f"no configurable-http-proxy at {found}: run scripts/python-env")
    return found


class Hub:
    """One JupyterHub whose spawner is GantrySpawner, acting as ``service/jupyterhub``."""

    def __init__(
        self, root: Path, profile: Path, spawner_class: str = "gantry", **spawner: Any
    ) -> None:
        self.root = root
        self.port, self.hub_port, self.proxy_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Another spawner (LocalProcessSpawner, for the benchmark) gets the same command.
        common = {"cmd": MOCK_SERVER, "start_timeout": 60, "http_timeout": 60}
        settings = {
            "gantry_profile": str(profile),
            "connect_host": "127.0.0.1",
            "listen_ip": "127.0.0.1",
            "python": sys.executable,
            "cmd": MOCK_SERVER,
            "start_timeout": 60,
            "http_timeout": 60,
            "cpus": 1,
            "memory": "128MiB",
            "walltime": "30m",
            **spawner,
        }
        lines = [
            "c = get_config()  # noqa",
            f"c.JupyterHub.ip = '127.0.0.1'; c.JupyterHub.port = {self.port}",
            f"c.JupyterHub.hub_ip = '127.0.0.1'; c.JupyterHub.hub_port = {self.hub_port}",
            f"c.JupyterHub.db_url = 'sqlite:///{root / 'jupyterhub.sqlite'}'",
            f"c.JupyterHub.cookie_secret_file = '{root / 'cookie_secret'}'",
            f"c.ConfigurableHTTPProxy.command = ['{proxy_command()}']",
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{self.proxy_port}'",
            "c.ConfigurableHTTPProxy.auth_token = 'proxy-token-for-tests'",
            "c.JupyterHub.authenticator_class = 'dummy'",
            "c.Authenticator.allow_all = True",
            f"c.JupyterHub.spawner_class = {spawner_class!r}",
            # Servers outlive the Hub: a restarted Hub finds them again.
            "c.JupyterHub.cleanup_servers = False",
            "c.JupyterHub.cleanup_proxy = True",
            f"c.JupyterHub.services = [{{'name': 'tests', 'api_token': '{TOKEN}'}}]",
            "c.JupyterHub.load_roles = [{'name': 'tests', 'services': ['tests'], 'scopes': "
            "['admin:users', 'admin:servers', 'admin:server_state', 'list:users', 'read:users', "
            "'access:servers']}]",
        ]
        if spawner_class == "gantry":
            lines += [f"c.GantrySpawner.{k} = {v!r}" for k, v in settings.items()]
        else:
            lines += [f"c.Spawner.{k} = {v!r}" for k, v in {**common, **spawner}.items()]
        self.config = root / "jupyterhub_config.py"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = root / "jupyterhub.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the Hub and wait until its API answers."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "jupyterhub"), "-f", str(self.config)],
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if self.api("GET", "/")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"JupyterHub did not start; its log:\n{self.tail()}")

    def stop(self) -> None:
        """Stop the Hub as an operator does (SIGTERM); its servers keep running."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A call to the Hub's REST API; the status and the decoded answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/hub/api{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                text = answer.read().decode()
                return answer.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, text

    def get(self, path: str) -> tuple[int, str]:
        """A request through the Hub's proxy (to a user's server), with the service token."""
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"token {TOKEN}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def server(self, user: str) -> dict[str, Any]:
        """The user's default server as the Hub knows it ({} when none)."""
        status, answer = self.api("GET", f"/users/{user}")
        assert status == 200, answer
        servers: dict[str, Any] = answer.get("servers", {})
        return dict(servers.get("", {}))

    def spawn(self, user: str, options: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Create the user (if new) and ask for their server."""
        self.api("POST", f"/users/{user}")
        return self.api("POST", f"/users/{user}/server", options or {})

    def until_ready(self, user: str, timeout: float = 90) -> dict[str, Any]:
        """Wait until the user's server is ready; fail with the Hub's log if it is not."""
        deadline = time.monotonic() + timeout
        server: dict[str, Any] = {}
        while time.monotonic() < deadline:
            server = self.server(user)
            if server.get("ready"):
                return server
            if not server:
                break
            time.sleep(0.3)
        raise AssertionError(f"{user}'s server is not ready: {server}\n{self.tail()}")
