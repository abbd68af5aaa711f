"""What the sync and the asyncio clients share: building requests, retry timing, channels."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TypedDict

import grpc

from ._config import Config
from .errors import GantryError
from .v1 import client_pb2, common_pb2

#: How long a call that is safe to repeat keeps trying while gantryd is unavailable.
RETRY_BUDGET = 30.0
#: Bytes per UploadInput message (gantryd accepts at most 1 MiB).
UPLOAD_CHUNK = 1 << 20
#: How often ``wait`` reads an array's summary.
ARRAY_POLL = 0.5

_END_STATES = frozenset(
    {
        common_pb2.JOB_STATE_COMPLETED,
        common_pb2.JOB_STATE_FAILED,
        common_pb2.JOB_STATE_CANCELLED,
    }
)

_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 16 << 20),
]


def credentials(config: Config) -> grpc.ChannelCredentials:
    """Credentials for mTLS: the caller's certificate, trusting only the installation's CA."""
    ca, cert, key = config.credentials()
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def channel_options() -> list[tuple[str, int]]:
    """Keep-alives like the Rust SDK's, and room for large job listings."""
    return list(_CHANNEL_OPTIONS)


def backoff_delays(budget: float = RETRY_BUDGET) -> Iterator[float]:
    """Delays between tries: 0.1 s doubling to 2 s, until ``budget`` seconds are spent."""
    spent, attempt = 0.0, 0
    while True:
        delay = min(0.1 * 2**attempt, 2.0)
        if spent + delay > budget:
            return
        spent += delay
        attempt += 1
        yield delay


class Deadline:
    """What is left of a timeout (``None``: no limit)."""

    def __init__(self, timeout: float | None) -> None:
        self.end = None if timeout is None else time.monotonic() + timeout

    def left(self) -> float | None:
        """Seconds left, or ``None`` without a limit."""
        return None if self.end is None else self.end - time.monotonic()

    def at_most(self, delay: float) -> float:
        """``delay``, cut to what is left."""
        left = self.left()
        return delay if left is None else max(0.0, min(delay, left))


def end_watch(job: client_pb2.Job) -> client_pb2.WatchEventsRequest:
    """The event stream of ``job`` from its latest change on."""
    return client_pb2.WatchEventsRequest(
        after_seq=job.last_event_seq, job_ids=[job.id], follow=True
    )


def ends(batch: client_pb2.WatchEventsResponse) -> bool:
    """Whether a batch of events holds an end state."""
    return any(is_end_state(e.to_state) for e in batch.events)


def still_running(job_id: int, job: client_pb2.Job | None, timeout: float | None) -> str:
    """WaitTimeout's message."""
    state = "not ended" if job is None else f"still {state_name(job.state)}"
    why = f" ({job.reason})" if job is not None and job.reason else ""
    return f"job {job_id} is {state}{why} after {timeout} s"


def is_end_state(state: int) -> bool:
    """Whether a job in ``state`` has ended (COMPLETED, FAILED or CANCELLED)."""
    return state in _END_STATES


def state_name(state: int) -> str:
    """A state's short name as the CLI prints it (``RUNNING``)."""
    return common_pb2.JobState.Name(state).removeprefix("JOB_STATE_")  # type: ignore[arg-type]


def parse_states(
    states: Iterable[common_pb2.JobState.ValueType | str],
) -> list[common_pb2.JobState.ValueType]:
    """``list``'s ``states``: enum values or names."""
    if isinstance(states, str):
        raise TypeError(f"states must be a sequence (e.g. [{states!r}]), not a str")
    return [parse_state(s) if isinstance(s, str) else s for s in states]


def parse_state(name: str) -> common_pb2.JobState.ValueType:
    """A state from its name, any case, with or without ``JOB_STATE_`` (``"running"``)."""
    key = name.strip().upper()
    if not key.startswith("JOB_STATE_"):
        key = "JOB_STATE_" + key
    try:
        value = common_pb2.JobState.Value(key)
    except ValueError:
        names = ", ".join(state_name(s) for s in common_pb2.JobState.values() if s)
        raise ValueError(f"{name!r} is not a job state (one of {names})") from None
    if value == common_pb2.JOB_STATE_UNSPECIFIED:
        raise ValueError(f"{name!r} is not a job state")
    return value


def log_stream(stream: str) -> common_pb2.LogStream.ValueType:
    """``"stdout"`` or ``"stderr"`` as the wire's enum."""
    if stream == "stdout":
        return common_pb2.LOG_STREAM_STDOUT
    if stream == "stderr":
        return common_pb2.LOG_STREAM_STDERR
    raise ValueError(f"stream must be 'stdout' or 'stderr', not {stream!r}")


def request_id() -> str:
    """A fresh client request id: a submit retried with it returns the first job."""
    return str(uuid.uuid4())


class SpecFields(TypedDict, total=False):
    """What a job needs and how it runs: ``submit``'s keyword arguments.

    Each is a field of ``JobSpec`` (proto/gantry/v1/client.proto says what
    each means); sizes and durations are strings gantryd parses, as the CLI's.
    """

    #: A script run by ``/bin/sh`` (or its own ``#!`` line), instead of ``argv``.
    script: str
    #: A name for people; defaults to the program's file name.
    name: str
    #: Environment variables added to the job's.
    env: Mapping[str, str]
    #: Environment variables whose values Gantry never shows or keeps once the
    #: job ended (tokens, passwords); answers carry their names only.
    secret_env: Mapping[str, str]
    #: CPUs per task (default 1).
    cpus: int
    #: Memory per node, e.g. ``"4G"`` (default ``"256MiB"``).
    memory: str
    #: GPUs per node.
    gpus: int
    #: Nodes the job spans (default 1).
    nodes: int
    #: Tasks (MPI ranks); default one per node.
    tasks: int
    #: At most this many tasks on each node.
    tasks_per_node: int
    #: Longest run time, e.g. ``"90s"``, ``"1h30m"``, ``"01:30:00"``.
    walltime: str
    #: The site (gate) to run on; default: the scheduler chooses.
    site: str
    #: Glob patterns of files copied back after the job ends (``"out/*.csv"``).
    outputs: Sequence[str]
    #: Free-form labels, for filtering and for people.
    labels: Mapping[str, str]
    #: Higher runs first, -1000..1000.
    priority: int
    #: Job ids that must complete before this job starts.
    after: Iterable[int]
    #: Start held until released.
    hold: bool
    #: An array's indices in Slurm's syntax, e.g. ``"0-99"``, ``"1,3,10-20:2"``.
    array: str
    #: A signal before the walltime ends, as ``sbatch --signal``: ``"USR1@60"``.
    signal: str
    #: A file (relative to the working directory) the job reads as stdin.
    stdin: str
    #: Run in this directory of the site (an absolute path).
    chdir: str
    #: Times the job is run again when what ran it was lost (default 3).
    retries: int


def build_spec(
    argv: Sequence[str] | None,
    inputs: Iterable[client_pb2.InputFile],
    fields: SpecFields,
) -> client_pb2.JobSpec:
    """A JobSpec from ``submit``'s arguments; gantryd checks and normalizes it."""
    if isinstance(argv, str):
        raise TypeError("argv must be a sequence of strings (e.g. ['echo', 'hi']), not a str")
    for key in ("outputs", "after"):
        if isinstance(fields.get(key), str):
            raise TypeError(f"{key} must be a sequence (e.g. [{fields.get(key)!r}]), not a str")
    script = fields.get("script", "")
    if bool(argv) == bool(script):
        raise ValueError("give exactly one of argv and script")
    resources = client_pb2.ResourceRequest(
        memory=fields.get("memory", ""),
        gpus=fields.get("gpus", 0),
        walltime=fields.get("walltime", ""),
        tasks_per_node=fields.get("tasks_per_node", 0),
    )
    if "cpus" in fields:
        resources.cpus = fields["cpus"]
    if "nodes" in fields:
        resources.nodes = fields["nodes"]
    if "tasks" in fields:
        resources.tasks = fields["tasks"]
    spec = client_pb2.JobSpec(
        name=fields.get("name", ""),
        argv=list(argv or ()),
        script=script,
        env=dict(fields.get("env", {})),
        secret_env=dict(fields.get("secret_env", {})),
        resources=resources,
        site=fields.get("site", ""),
        inputs=list(inputs),
        outputs=list(fields.get("outputs", ())),
        labels=dict(fields.get("labels", {})),
        priority=fields.get("priority", 0),
        after=list(fields.get("after", ())),
        hold=fields.get("hold", False),
        array=fields.get("array", ""),
        signal=fields.get("signal", ""),
        stdin=fields.get("stdin", ""),
        chdir=fields.get("chdir", ""),
    )
    if "retries" in fields:
        spec.retries = fields["retries"]
    return spec


def input_paths(
    inputs: Mapping[str, str | os.PathLike[str]] | None,
) -> list[tuple[str, Path]]:
    """``submit``'s ``inputs`` (where in the working directory → local file) as pairs."""
    return [(dest, Path(local)) for dest, local in (inputs or {}).items()]


def input_file(digest: str, dest: str, local: Path) -> client_pb2.InputFile:
    """The InputFile of an uploaded ``local`` file placed at ``dest``, keeping its mode."""
    return client_pb2.InputFile(digest=digest, path=dest, mode=local.stat().st_mode & 0o777)


def open_input(path: Path) -> BinaryIO:
    """Open a file to upload, with an error naming it when it cannot be read."""
    try:
        return path.open("rb")
    except OSError as e:
        raise GantryError(f"cannot read {path}: {e.strerror}") from e


class InputReader:
    """An open file's bytes as UploadInput messages, keeping a read error to report.

    gRPC turns an exception of a request iterator into a cancelled call (sync:
    UNKNOWN, asyncio: ``CancelledError``); :meth:`failure` says what it was.
    """

    def __init__(self, path: Path, file: BinaryIO) -> None:
        self.path, self.file = path, file
        self.error: OSError | None = None

    def requests(self) -> Iterator[client_pb2.UploadInputRequest]:
        """The messages, read here."""
        try:
            while data := self.file.read(UPLOAD_CHUNK):
                yield client_pb2.UploadInputRequest(data=data)
        except OSError as e:
            self.error = e
            raise

    async def requests_async(self) -> AsyncIterator[client_pb2.UploadInputRequest]:
        """The messages, read off the event loop."""
        try:
            while data := await asyncio.to_thread(self.file.read, UPLOAD_CHUNK):
                yield client_pb2.UploadInputRequest(data=data)
        except OSError as e:
            self.error = e
            raise

    def failure(self) -> GantryError | None:
        """The read error that ended the upload, if one did."""
        if self.error is None:
            return None
        return GantryError(f"cannot read {self.path}: {self.error.strerror or self.error}")


def output_path(dest: Path, relative: str) -> Path:
    """Where an output file goes under ``dest``; refuses absolute paths and ``..``."""
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or ".." in parts:
        raise GantryError(
            f"refusing to write output {relative!r}: only relative paths without `..` are allowed"
        )
    return dest.joinpath(*parts)


class OutputWriter:
    """Writes DownloadOutputs chunks to files under a directory, one file after another."""

    def __init__(self, dest: str | os.PathLike[str]) -> None:
        self.dest = Path(dest)
        self.dest.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []
        self._file: int | None = None

    def add(self, chunk: common_pb2.FileChunk) -> None:
        """Take the next chunk: a new file when it carries a path, else more of the current one."""
        if chunk.path:
            self.close()
            path = output_path(self.dest, chunk.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            mode = (chunk.mode & 0o777) or 0o644
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
            self._file = os.open(path, flags, mode)
            os.fchmod(self._file, mode)
            self.written.append(path)
        if self._file is None:
            raise GantryError("gantryd sent output data before its file's path")
        view = memoryview(chunk.data)
        while view:
            view = view[os.write(self._file, view) :]

    def close(self) -> None:
        """Finish the current file."""
        if self._file is not None:
            os.close(self._file)
            self._file = None
