"""GantrySpawner: each JupyterHub user's server is a Gantry job, submitted for that user."""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import gantry
import gantry.aio
from jupyterhub.spawner import Spawner
from traitlets import Callable as CallableTrait
from traitlets import CaselessStrEnum, Integer, List, Unicode, default

from .form import options_form, user_options

#: The line the job prints once it knows its port; the spawner reads it from the job's stdout.
READY_MARK = "gantry-jupyterhub: listening on "

#: Labels that find a server's job again (a Hub restarted during a spawn never saved its id).
USER_LABEL = "jupyterhub.user"
SERVER_LABEL = "jupyterhub.server"

_QUEUED = ("QUEUED", "SCHEDULED", "PROVISIONING", "STAGING_IN")

#: One client (one connection to gantryd) per profile and event loop, shared by all spawners.
_CLIENTS: dict[tuple[str, int], gantry.aio.Client] = {}

#: Cleanups running after a cancelled spawn (kept so they are not collected mid-way).
_CLEANUPS: set[asyncio.Future[None]] = set()

#: Reasons for which a queued job can never run on the sites there are now.
_CANNOT_RUN = re.compile(
    r"^(no site offers (?!any flavor yet)|site `[^`]*` does not (offer|exist))"
)


class SpawnFailed(RuntimeError):
    """The server's job cannot run or ended before its server answered."""


class GantrySpawner(Spawner):  # type: ignore[misc]
    """Starts each single-user server as a Gantry job owned by the Hub user.

    The Hub talks to gantryd with its own service identity
    (``service/jupyterhub``, allowed to act for users in gantryd's config) and
    submits for the user: the job is theirs, they see it with their own
    ``gantry`` CLI, and no other user can. The Hub's API token reaches the
    server as a secret (never shown by Gantry, deleted when the job ends).
    """

    gantry_profile = Unicode(
        "",
        help="""The profile file (address, ca, cert, key) of the Hub's Gantry identity.

        Empty: found as the `gantry` CLI finds one (GANTRY_ADDR/CA/CERT/KEY,
        GANTRY_PROFILE, the profile `gantry dev` writes).""",
    ).tag(config=True)

    gantry_user = CallableTrait(
        default_value=None,
        allow_none=True,
        help="""Map a Hub user name to the Gantry user the job belongs to.

        Called with the Hub user's name; the default uses it unchanged. Gantry
        user names are 1-64 of A-Z a-z 0-9 . _ - (not starting with . or -).""",
    ).tag(config=True)

    site = Unicode("", help="The Gantry site servers run on; empty: the scheduler chooses.").tag(
        config=True
    )
    cpus = Integer(1, help="CPUs a server gets unless the user chooses.").tag(config=True)
    memory = Unicode("1G", help='Memory a server gets unless the user chooses ("4G").').tag(
        config=True
    )
    gpus = Integer(0, help="GPUs a server gets unless the user chooses.").tag(config=True)
    walltime = Unicode("8h", help='How long a server may run ("8h", "1-00:00:00").').tag(
        config=True
    )

    connect_host = Unicode(
        "",
        help="""The host the Hub reaches servers at.

        Empty: the job's first node, as its gate names it (GANTRY_NODELIST).
        Set it when nodes are reached by another name, or to 127.0.0.1 for a
        local gate on the Hub's machine.""",
    ).tag(config=True)

    forward = CaselessStrEnum(
        ["auto", "always", "never"],
        default_value="auto",
        help="""How the Hub reaches a server: through Gantry or at its node's address.

        "auto": through Gantry's port forwarding when the server's site is
        elastic (a cloud machine accepts no inbound connection; the bytes go
        Hub → gantryd → gate → the machine's agent → the server's port on its
        loopback), directly at the node's address otherwise (local, Slurm).
        "always" and "never" choose one way for every site.""",
    ).tag(config=True)

    listen_ip = Unicode("0.0.0.0", help="The address the server listens on, on its node.").tag(
        config=True
    )

    python = Unicode(
        "python3", help="The Python on the nodes, used to find a free port there."
    ).tag(config=True)

    secret_env_names = List(
        Unicode(),
        default_value=["JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"],
        help="Environment variables passed as Gantry secrets, never as plain environment.",
    ).tag(config=True)

    job_id = Integer(0, help="The Gantry job of the current server (kept in the Hub's state).")
    server_port = Integer(0, help="The server's port on its node, when forwarded (kept in state).")
    forward_port = Integer(0, help="The Hub's local port forwarding to it (kept in state).")

    _forwarding: gantry.aio.PortForward | None = None

    @default("options_from_form")
    def _default_options_from_form(self) -> Callable[[dict[str, list[str]]], dict[str, Any]]:
        return user_options

    # Gantry

    def _client(self) -> gantry.aio.Client:
        """The Hub's asyncio client for this profile, one for every spawner of the Hub."""
        key = (self.gantry_profile, id(asyncio.get_running_loop()))
        client = _CLIENTS.get(key)
        if client is None:
            config = (
                gantry.Config.from_profile(self.gantry_profile)
                if self.gantry_profile
                else gantry.Config.discover()
            )
            client = _CLIENTS[key] = gantry.aio.Client(config)
        return client

    def _owner(self) -> str:
        name: str = self.user.name
        mapping: Callable[[str], str] | None = self.gantry_user
        return str(mapping(name)) if mapping is not None else name

    def _labels(self) -> dict[str, str]:
        return {USER_LABEL: self.user.name, SERVER_LABEL: self.name or "default"}

    async def _find_job(self) -> tuple[gantry.Job | None, int]:
        """The job of this server that has not ended, if any, and how many have ended.

        Only jobs the Hub submitted count (a user may label a job of their own so).
        """
        active, ended = None, 0
        async for job in self._client().list(owner=self._owner(), labels=self._labels()):
            if not job.submitted_by.startswith("service/"):
                continue
            if gantry.is_end_state(job.state):
                ended += 1
            elif active is None:
                active = job
        return active, ended

    def _script(self) -> str:
        """The job: find a free port on the node, say where, run the server there."""
        host = shlex.quote(self.connect_host) if self.connect_host else '"${GANTRY_NODELIST%%,*}"'
        command = shlex.join([*self.cmd, *self.get_args()])
        python = shlex.quote(self.python)
        find_port = 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
        return (
            "set -e\n"
            f"port=$({python} -c {shlex.quote(find_port)})\n"
            f"host={host}\n"
            f'export JUPYTERHUB_SERVICE_URL="http://{self.listen_ip}:$port'
            '${JUPYTERHUB_SERVICE_PREFIX:-/}"\n'
            f'echo "{READY_MARK}$host:$port"\n'
            f"exec {command}\n"
        )

    def _resources(self) -> dict[str, Any]:
        """What the user chose (user_options), over the configured defaults."""
        chosen = dict(self.user_options or {})
        return {
            "site": str(chosen.get("site") or self.site),
            "cpus": int(chosen.get("cpus") or self.cpus),
            "memory": str(chosen.get("memory") or self.memory),
            "gpus": int(chosen.get("gpus") or self.gpus),
            "walltime": str(chosen.get("walltime") or self.walltime),
        }

    async def _submit(self) -> gantry.Job:
        """Submit this spawn's job; a job of an earlier spawn still there is replaced.

        JupyterHub gives every spawn a new API token (and OAuth secret); a job
        left by a spawn the Hub lost (it restarted before start() returned)
        carries the old one, with which its server could not log users in. So
        it is cancelled, and there is never more than one live job per server.
        """
        client = self._client()
        job, ended = await self._find_job()
        if job is not None:
            self.log.info(
                "Replacing Gantry job %d of an earlier spawn of %s", job.id, self._log_name
            )
            await client.cancel(job.id, "replaced by a new spawn of its server")
            ended += 1
        env = self.get_env()
        secrets = {k: env.pop(k) for k in list(env) if k in self.secret_env_names}
        # Deterministic per spawn: a submit repeated after a broken connection
        # (or by a Hub restarted meanwhile) gets this same job back.
        request_id = f"jupyterhub/{self.user.name}/{self.name or 'default'}/{ended}"
        return await client.submit(
            script=self._script(),
            name=f"jupyterhub-{self.user.name}" + (f"-{self.name}" if self.name else ""),
            env=env,
            secret_env=secrets,
            labels=self._labels(),
            on_behalf_of=self._owner(),
            request_id=request_id,
            **self._resources(),
        )

    # The Spawner API

    def load_state(self, state: dict[str, Any]) -> None:
        """Take the job id (and the forwarded ports) back from the Hub's database."""
        super().load_state(state)
        self.job_id = int(state.get("job_id", 0))
        self.server_port = int(state.get("server_port", 0))
        self.forward_port = int(state.get("forward_port", 0))

    def get_state(self) -> dict[str, Any]:
        """Keep the job id (and the forwarded ports) in the Hub's database."""
        state: dict[str, Any] = super().get_state()
        if self.job_id:
            state["job_id"] = self.job_id
        if self.server_port:
            state["server_port"] = self.server_port
            state["forward_port"] = self.forward_port
        return state

    def clear_state(self) -> None:
        """Forget the job once its server is gone."""
        super().clear_state()
        self.job_id = self.server_port = self.forward_port = 0

    async def get_options_form(self) -> str:
        """Sites and flavors from Gantry, with CPUs, memory, GPUs and price; and walltime."""
        if self.options_form:
            form: str = await super().get_options_form()
            return form
        return options_form(await self._client().sites(), self._resources())

    async def start(self) -> tuple[str, int]:
        """Submit the server's job and wait until its server says where it listens."""
        self._events: list[dict[str, Any]] = []
        try:
            job = await self._submit()
        except asyncio.CancelledError:
            # start_timeout while the submit was in flight: gantryd may have
            # the job though its id never came back.
            _CLEANUPS.add(cleanup := asyncio.ensure_future(self._cancel_by_labels()))
            cleanup.add_done_callback(_CLEANUPS.discard)
            raise
        self.job_id = job.id
        self._progress(10, f"Gantry job {job.id} submitted")
        watching = asyncio.ensure_future(self._until_running_or_ended(job))
        reading = asyncio.ensure_future(self._address(job.id))
        try:
            done, _ = await asyncio.wait({watching, reading}, return_when=asyncio.FIRST_COMPLETED)
            if reading not in done:
                watching.result()  # raises SpawnFailed when the job ended or cannot run
            host, port = await reading
            self._progress(90, f"server listening on {host}:{port}")
            return await self._reach(job.id, host, port)
        finally:
            for task in (watching, reading):
                task.cancel()

    async def _cancel_by_labels(self) -> None:
        """Cancel this server's live job, found by its labels (its id is not known)."""
        try:
            job, _ = await self._find_job()
            if job is not None:
                await self._client().cancel(job.id, "its spawn was cancelled")
        except gantry.GantryError as error:
            self.log.warning("Could not cancel the job of %s's spawn: %s", self._log_name, error)

    async def _until_running_or_ended(self, job: gantry.Job) -> None:
        """Report what Gantry says while the job waits; raise if it ends or cannot run.

        Reads the job once a second: a queued job's reason changes without an event.
        """
        client = self._client()
        said = ""
        while True:
            try:
                job = await client.get(job.id)
            except gantry.Unavailable as error:
                # gantryd away for a moment: the spawn waits, saying so.
                self._progress(20, f"Gantry is unavailable for now: {error}")
                await asyncio.sleep(1)
                continue
            state = gantry.state_name(job.state)
            if gantry.is_end_state(job.state):
                raise SpawnFailed(
                    f"Gantry job {job.id} ended {state} before its server started: {job.reason}"
                )
            if state == "QUEUED" and _CANNOT_RUN.match(job.reason):
                await client.cancel(job.id, "no site can run this server")
                raise SpawnFailed(f"Gantry cannot run this server: {job.reason}")
            if state in _QUEUED:
                message = f"waiting: {job.reason}" if job.reason else f"{state.lower()}"
                percent = 20
            else:
                message = f"running on {job.site}" + (f" ({job.reason})" if job.reason else "")
                percent = 60
            if message != said:
                said = message
                self._progress(percent, f"Gantry job {job.id}: {message}")
            await asyncio.sleep(1)

    async def _address(self, job_id: int) -> tuple[str, int]:
        """The host and port the job printed, read from its stdout as it runs."""
        pending = b""
        async for piece in self._client().logs(job_id, follow=True):
            *lines, pending = (pending + piece).split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                if text.startswith(READY_MARK):
                    host, _, port = text[len(READY_MARK) :].strip().rpartition(":")
                    return host, int(port)
        raise SpawnFailed(f"Gantry job {job_id} ended without starting its server")

    async def _forwarded(self, job_id: int) -> bool:
        """Whether the Hub reaches job ``job_id``'s server through Gantry (see ``forward``)."""
        if self.forward != "auto":
            return bool(self.forward == "always")
        client = self._client()
        site = (await client.get(job_id)).site
        return any(s.name == site and s.elastic for s in await client.sites())

    async def _reach(self, job_id: int, host: str, port: int) -> tuple[str, int]:
        """Where the Hub reaches the server: its node, or a local port Gantry forwards."""
        if not await self._forwarded(job_id):
            return host, port
        self.server_port = port
        await self._listen()
        self._progress(95, f"reached through Gantry at 127.0.0.1:{self.forward_port}")
        return "127.0.0.1", self.forward_port

    async def _listen(self) -> None:
        """Forward a local port to the server: the one used before if it is free."""
        client = self._client()
        try:
            forward = await client.forward(
                self.job_id, self.server_port, local_port=self.forward_port
            )
        except OSError as error:
            self.log.warning(
                "Local port %d for %s is taken (%s); forwarding another",
                self.forward_port,
                self._log_name,
                error,
            )
            forward = await client.forward(self.job_id, self.server_port)
        self._forwarding = forward
        self.forward_port = forward.local_port

    async def _stop_forwarding(self) -> None:
        if self._forwarding is not None:
            await self._forwarding.close()
            self._forwarding = None

    async def get_url(self) -> str:
        """The server's URL; after a Hub restart, on the port forwarded again."""
        url: str = await super().get_url()
        if self._forwarding is None:
            return url
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.forward_port}"))

    def _progress(self, percent: int, message: str) -> None:
        events: list[dict[str, Any]] | None = getattr(self, "_events", None)
        if events is not None:
            events.append({"progress": percent, "message": message})

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """What Gantry says while the server waits and starts ("waiting: no free CPU ...").

        Every reader sees this spawn's events from its first.
        """
        seen = 0
        while self._spawn_pending:
            events: list[dict[str, Any]] = getattr(self, "_events", [])
            while seen < len(events):
                yield events[seen]
                seen += 1
            await asyncio.sleep(0.5)

    async def poll(self) -> int | None:
        """``None`` while the job is queued, starting or running; its exit code once it ended."""
        if not self.job_id:
            return 0
        try:
            job = await self._client().get(self.job_id)
        except gantry.NotFound:
            return 0
        except gantry.Unavailable:
            # Gantry away for a moment is not the server's end.
            return None
        if not gantry.is_end_state(job.state):
            if self.server_port and self._forwarding is None:
                # A restarted Hub: its forwarding ended with the old process.
                await self._listen()
            return None
        await self._stop_forwarding()
        if job.HasField("exit_code"):
            return int(job.exit_code)
        return 0 if gantry.state_name(job.state) == "COMPLETED" else 1

    async def stop(self, now: bool = False) -> None:
        """Cancel the server's job and wait for its end (retrying while gantryd is away)."""
        await self._stop_forwarding()
        if not self.job_id:
            await self._cancel_by_labels()
            return
        client = self._client()
        for attempt in range(10):
            try:
                await client.cancel(self.job_id, "server stopped by JupyterHub")
                await client.wait(self.job_id, timeout=10 if now else 60)
                return
            except gantry.NotFound:
                return
            except gantry.WaitTimeout:
                self.log.warning("Gantry job %d had not ended when stop returned", self.job_id)
                return
            except gantry.Unavailable as error:
                self.log.warning(
                    "Cancelling Gantry job %d: %s (try %d)", self.job_id, error, attempt
                )
                await asyncio.sleep(2)
        raise SpawnFailed(f"could not cancel Gantry job {self.job_id}: gantryd stays unavailable")
