r"""A Gantry gate in Python: runs gantryd's jobs as processes on this machine.

It serves proto/gantry/v1/gate.proto over mTLS with grpc.aio on one event
loop, and shows that the gate contract can be met from the proto alone,
without Gantry's Rust harness. Each attempt runs under a shepherd process
(shepherd.py) that outlives the gate, and the gate keeps its records on disk,
so a gate killed and started again reports every attempt as it truly is.

    python gate.py --name NAME --listen 127.0.0.1:0 --ready-file FILE \
        --pki-dir DIR --work-dir DIR

The work directory holds `partitions/<id>.json`, `attempts/<id>/` (the
record `attempt.json`, the job's `work/` directory, `stdout`, `stderr`, the
shepherd's files) and the ids the gate keeps refusing, one per line:
`released` (attempts) and `deleted` (partitions).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import functools
import io
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from gantry.v1 import common_pb2 as common
from gantry.v1 import gate_pb2 as pb
from gantry.v1 import gate_pb2_grpc

from shepherd import CANCEL, EXIT, LOCK, STARTED, ended, read_json, write_file, write_json

VERSION = "0.1.0"
FLAVOR = "host"
CHUNK = 1 << 20  # the most data in one FileChunk or LogChunk (common.proto)
POLL = 0.2  # seconds between looks at the attempts' files
FOLLOW = 0.1  # seconds between looks at a followed log
GRACE = 3  # seconds from SIGTERM to SIGKILL on cancel and walltime
REMEMBER = 65_536  # how many released attempts and deleted partitions are refused
WATCH_BUFFER = 1024  # changes queued for a watcher before it gets a new listing
ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SHEPHERD = Path(__file__).resolve().with_name("shepherd.py")
LOST = "the gate lost its shepherd"
FINAL = {pb.GATE_JOB_STATE_SUCCEEDED, pb.GATE_JOB_STATE_FAILED, pb.GATE_JOB_STATE_CANCELLED}
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED

Ctx = grpc.aio.ServicerContext[Any, Any]
G = TypeVar("G", bound="Gate")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class Refused(Exception):
    """A call the gate refuses: the status code and the message to answer."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def unary(
    call: Callable[[G, Req, Ctx], Awaitable[Resp]],
) -> Callable[[G, Req, Ctx], Awaitable[Resp]]:
    """Authorize the caller, then answer the call, or its refusal as a status."""

    @functools.wraps(call)
    async def handler(gate: G, request: Req, context: Ctx) -> Resp:
        try:
            gate.authorize(context)
            return await call(gate, request, context)
        except Refused as e:
            await context.abort(e.code, str(e))
        except OSError as e:  # a file the gate could not read or write: retryable
            await context.abort(grpc.StatusCode.INTERNAL, str(e))

    return handler


def streaming(
    call: Callable[[G, Req, Ctx], AsyncIterator[Resp]],
) -> Callable[[G, Req, Ctx], AsyncIterator[Resp]]:
    """Authorize the caller, then stream the answers; a refusal ends the stream."""

    @functools.wraps(call)
    async def handler(gate: G, request: Req, context: Ctx) -> AsyncIterator[Resp]:
        try:
            gate.authorize(context)
            async for answer in call(gate, request, context):
                yield answer
        except Refused as e:
            await context.abort(e.code, str(e))
        except OSError as e:
            await context.abort(grpc.StatusCode.INTERNAL, str(e))

    return handler


def check_id(field: str, value: str) -> str:
    """An id gantryd chose: 1 to 64 of [A-Za-z0-9_-] (common.proto), safe as a file name."""
    if not ID.fullmatch(value):
        raise Refused(INVALID, f"{field}: `{value}` is not an id (1 to 64 of A-Z a-z 0-9 _ -)")
    return value


def safe_path(field: str, value: str) -> Path:
    """A path relative to a working directory that cannot leave it."""
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if value.startswith("/") or ".." in parts or not parts or "\0" in value:
        raise Refused(INVALID, f"{field}: `{value}` must be relative, without `..`")
    return Path(*parts)


def glob_regex(field: str, pattern: str) -> re.Pattern[str]:
    r"""A StageOut glob as a regex, with the meaning of Rust's globset.

    StageOutRequest.globs describes it: `*` and `?` within one path part,
    `**` as a whole part spans any number of parts, `[...]` (`[!...]`) one
    of a set, `{a,b}` either; `\` escapes. Python's fnmatch differs (its `*`
    crosses `/`), hence this translation.
    """
    if not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
        raise Refused(INVALID, f"{field}: `{pattern}` must be relative, without `..`")
    out: list[str] = []
    depth, i = 0, 0
    while i < len(pattern):
        c, rest = pattern[i], pattern[i + 1 :]
        if c == "*" and rest[:1] == "*" and (i == 0 or pattern[i - 1] in "/{,"):
            after = rest[1:2]
            if after not in ("", "/", ",", "}"):
                out.append("[^/]*")  # `**` inside a part is two `*`
            elif i > 0 and pattern[i - 1] == "/":  # `a/**`, `a/**/b`: in place of that `/`
                out[-1:] = ["(?:/|/.*/)" if after == "/" else "/.*"]
            else:  # `**/a`, or `**` alone
                out.append("(?:/?|.*/)" if after == "/" else ".*")
            i += 3 if after == "/" else 2
            continue
        if c == "[":
            end = pattern.find("]", i + 2 + (rest[:1] in ("!", "^")))  # `[]...]` holds a `]`
            if end < 0:
                raise Refused(INVALID, f"{field}: `{pattern}` has an unclosed `[`")
            body = pattern[i + 1 : end]
            negated = body[:1] in ("!", "^")
            body = "".join("\\" + ch if ch in "\\[]^" else ch for ch in body[negated:])
            out.append("[" + "^" * negated + body + "]")
            i = end + 1
            continue
        if c == "\\":
            if not rest:
                raise Refused(INVALID, f"{field}: `{pattern}` ends with `\\`")
            out.append(re.escape(rest[0]))
            i += 2
            continue
        if c == "}" and not depth:
            raise Refused(INVALID, f"{field}: `{pattern}` closes a `}}` it did not open")
        depth += (c == "{") - (c == "}")
        out.append({"?": "[^/]", "*": "[^/]*", "{": "(?:", "}": ")"}.get(c) or re.escape(c))
        if c == "," and depth:
            out[-1] = "|"
        i += 1
    try:
        if depth:
            raise re.error("unclosed `{`")
        return re.compile("".join(out), re.DOTALL)
    except re.error as e:
        raise Refused(INVALID, f"{field}: `{pattern}` is not a glob: {e}") from None


def regular_files(top: Path, rel: str = "") -> Iterator[tuple[str, Path]]:
    """(relative path, path) of the regular files under `top`.

    In name order, depth first, as the Rust gates send them; symbolic links
    are not followed.
    """
    try:
        entries = sorted(os.scandir(top / rel), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_dir(follow_symlinks=False):
            yield from regular_files(top, path)
        elif entry.is_file(follow_symlinks=False):
            yield path, Path(entry.path)


def file_chunks(path: Path, rel: str) -> Iterator[common.FileChunk]:
    """One file as FileChunks: the first names it and gives its mode."""
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
        mode = os.fstat(f.fileno()).st_mode & 0o777
        data = f.read(CHUNK)
        yield common.FileChunk(path=rel, mode=mode, data=data)  # an empty file: this one chunk
        while data := f.read(CHUNK):
            yield common.FileChunk(data=data)


def create_file(top: Path, rel: Path, mode: int) -> io.BufferedWriter:
    """Create (or truncate) `rel` under `top`, making its directories.

    Never through or onto a symbolic link (one a job left there, say).
    """
    here = top
    for part in rel.parts[:-1]:
        here = here / part
        try:
            if not stat.S_ISDIR(os.lstat(here).st_mode):
                raise Refused(INVALID, f"chunk.path: `{rel}` passes through a file or link")
        except FileNotFoundError:
            here.mkdir()
    try:
        fd = os.open(top / rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    except OSError as e:
        if e.errno in (errno.EISDIR, errno.ELOOP):
            raise Refused(INVALID, f"chunk.path: `{rel}` is a directory or a link") from None
        raise
    os.fchmod(fd, mode)
    return open(fd, "wb")


def read_at(path: Path, offset: int) -> bytes:
    """Up to CHUNK bytes of a log from `offset`; a log not yet written is empty."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(CHUNK)
    except FileNotFoundError:
        return b""


def login_env() -> dict[str, str]:
    """What a login of the gate's user starts with (HOME USER LOGNAME SHELL PATH).

    A job's environment starts from this, never from the gate's own
    (gate.proto, Task.env): the gate's may hold its credentials.
    """
    user = pwd.getpwuid(os.getuid())
    path = "/usr/local/bin:/usr/bin:/bin"
    if os.getuid() == 0:
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    shell = user.pw_shell or "/bin/sh"
    return {
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "SHELL": shell,
        "PATH": path,
    }


def host_flavor() -> common.Flavor:
    """The one flavor: this host's CPUs and memory, one partition at a time."""
    with open("/proc/meminfo") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    cpus = len(os.sched_getaffinity(0))
    capacity = common.Capacity(cpus=cpus, memory_bytes=kib * 1024, nodes=1)
    return common.Flavor(name=FLAVOR, capacity=capacity, max_partitions=1, available=True)


def shepherd_alive(home: Path) -> bool:
    """Whether the attempt's shepherd lives: it holds the lock on `lock` until it exits."""
    try:
        fd = os.open(home / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class Recent:
    """The newest REMEMBER ids of a kind (released attempts, deleted partitions).

    Kept in a file, one per line, so that a gate started again still refuses them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        lines = path.read_text().split() if path.exists() else []
        self.ids = dict.fromkeys(lines[-REMEMBER:])
        self.lines = len(lines)

    def __contains__(self, item: str) -> bool:
        return item in self.ids

    def add(self, item: str) -> None:
        """Remember `item`, durably (before the caller acts on it)."""
        if item in self.ids:
            return
        self.ids[item] = None
        if len(self.ids) > REMEMBER:
            del self.ids[next(iter(self.ids))]
        self.lines += 1
        if self.lines > 2 * REMEMBER:  # compact the file
            write_file(self.path, "".join(f"{i}\n" for i in self.ids).encode())
            self.lines = len(self.ids)
            return
        with open(self.path, "a") as f:
            f.write(f"{item}\n")
            f.flush()
            os.fsync(f.fileno())


@dataclass
class Attempt:
    """An attempt the gate started and has not released."""

    home: Path
    record: dict[str, Any]  # attempt.json: its ids, its job id, the CPUs and memory it holds
    job: pb.GateJob
    shepherd: subprocess.Popen[bytes] | None = None  # when this gate started it
    released: bool = False


def kill_orphan(pgid: int, attempt_id: str) -> None:
    """SIGKILL a job that outlived its shepherd, lest it run on beside its retry.

    Only a process that carries the attempt's id in its environment: after a
    reboot, the recorded pid may be anyone's.
    """
    try:
        environ = Path(f"/proc/{pgid}/environ").read_bytes().split(b"\0")
        if f"GANTRY_ATTEMPT_ID={attempt_id}".encode() in environ:
            os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def lost(a: Attempt) -> dict[str, Any]:
    """The exit record of an attempt whose shepherd died without writing one."""
    began = read_json(a.home / STARTED) or {}
    if "pid" in began:
        kill_orphan(began["pid"], a.record["attempt_id"])
    if (a.home / CANCEL).exists():  # gantryd wanted it stopped: CANCELLED, no retry
        end = ended("CANCELLED", None, "cancelled; " + LOST)
    else:  # lost: gantryd runs the job again
        end = ended("FAILED", None, LOST, lost=True)
    write_json(a.home / EXIT, end)
    return end


def observe(a: Attempt) -> pb.GateJob:
    """The attempt's state as its files say (shepherd.py describes them)."""
    end = read_json(a.home / EXIT)
    if end is None and not shepherd_alive(a.home):  # gone: did it write its record meanwhile?
        end = read_json(a.home / EXIT) or lost(a)
    began = read_json(a.home / STARTED) or {}
    job = pb.GateJob(
        attempt_id=a.record["attempt_id"],
        partition_id=a.record["partition_id"],
        job_id=a.record["job_id"],
        native_id=str(began.get("pid", "")),  # the job's pid, once it runs
        start_time_ms=began.get("start_ms", 0),
    )
    if end is None:
        job.state = pb.GATE_JOB_STATE_RUNNING if began else pb.GATE_JOB_STATE_PENDING
        job.reason = "" if began else "starting"
        return job
    job.state = pb.GateJobState.Value("GATE_JOB_STATE_" + end["state"])
    job.reason, job.lost, job.end_time_ms = end["reason"], end["lost"], end["end_ms"]
    if end["exit_code"] is not None:  # left unset when no process ran
        job.exit_code = end["exit_code"]
    for name in ("stdout", "stderr"):  # gantryd does not copy a log said to be empty
        path = a.home / name
        setattr(job, f"{name}_bytes", path.stat().st_size if path.exists() else 0)
    return job


class Gate(gate_pb2_grpc.GateServicer):
    """The Gate service over this machine; everything it knows is under `work`."""

    def __init__(self, name: str, installation: str, work: Path) -> None:
        self.name, self.core, self.work = name, f"spiffe://{installation}/core".encode(), work
        work.mkdir(parents=True, exist_ok=True)
        self.lock = os.open(work / "gate.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit(f"another gate uses {work}")
        shutil.rmtree(work / "trash", ignore_errors=True)
        for sub in ("partitions", "attempts", "trash"):
            (work / sub).mkdir(exist_ok=True)
        self.flavor = host_flavor()
        self.released, self.deleted = Recent(work / "released"), Recent(work / "deleted")
        self.partitions: dict[str, dict[str, Any]] = {}
        for path in sorted((work / "partitions").glob("*.json")):
            if record := read_json(path):
                self.partitions[record["partition_id"]] = record
        self.attempts: dict[str, Attempt] = {}
        self.watchers: set[asyncio.Queue[pb.GateJob | None]] = set()
        self.closing = False  # set on SIGTERM: long streams end so the server can stop
        for home in sorted((work / "attempts").iterdir()):
            record = read_json(home / "attempt.json")
            if home.name in self.released:  # released, but the gate died removing it
                shutil.rmtree(home, ignore_errors=True)
            elif record is not None:  # else: files staged for an attempt not started yet
                self.attempts[home.name] = a = Attempt(home, record, pb.GateJob())
                a.job = observe(a)

    def authorize(self, context: Ctx) -> None:
        """Only the core may call (gate.proto, first lines): else PERMISSION_DENIED.

        grpc sets `peer_spiffe_id` when the client's certificate holds exactly
        one spiffe:// URI SAN, as Gantry's do. A caller without a certificate
        never gets here: the TLS handshake requires one.
        """
        if context.auth_context().get("peer_spiffe_id") != [self.core]:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, "only the core may call a gate")

    def attempt(self, attempt_id: str) -> Attempt:
        """The unreleased attempt `attempt_id`, or NOT_FOUND."""
        a = self.attempts.get(check_id("attempt_id", attempt_id))
        if a is None:
            raise Refused(NOT_FOUND, f"attempt `{attempt_id}` is unknown (or released)")
        return a

    def refresh(self, a: Attempt) -> pb.GateJob:
        """The attempt's state now; a change goes to every watcher."""
        if a.shepherd is not None and a.shepherd.poll() is not None:
            a.shepherd = None  # reaped
        if a.job.state not in FINAL and not a.released:
            job = observe(a)
            if job != a.job:
                a.job = job
                self.publish(job)
        return a.job

    def publish(self, job: pb.GateJob) -> None:
        """Send a new state to every watcher; one that fell behind gets a new listing."""
        for queue in self.watchers:
            try:
                queue.put_nowait(job)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    def stop(self, a: Attempt, reason: str) -> None:
        """Ask the shepherd to stop the job: it ends CANCELLED with `reason`."""
        if self.refresh(a).state not in FINAL and not (a.home / CANCEL).exists():
            write_file(a.home / CANCEL, reason.encode())

    def running(self) -> list[Attempt]:
        """The attempts that have not ended."""
        return [a for a in list(self.attempts.values()) if self.refresh(a).state not in FINAL]

    def partition(self, partition_id: str) -> pb.Partition:
        """A partition as it is: READY, or DELETING then DELETED once deleted."""
        if record := self.partitions.get(partition_id):
            # `queue` unset: nothing waits; a job that does not fit now is RESOURCE_EXHAUSTED.
            host = socket.gethostname()
            return pb.Partition(
                partition_id=partition_id,
                flavor=record["flavor"],
                state=pb.PARTITION_STATE_READY,
                capacity=self.flavor.capacity,
                native_id=host,
            )
        if partition_id not in self.deleted:
            raise Refused(NOT_FOUND, f"partition `{partition_id}` is unknown")
        stopping = any(a.job.partition_id == partition_id for a in self.running())
        state = pb.PARTITION_STATE_DELETING if stopping else pb.PARTITION_STATE_DELETED
        message = "deleted; a deleted partition is never made again"
        return pb.Partition(partition_id=partition_id, flavor=FLAVOR, state=state, message=message)

    def close(self) -> None:
        """End the long streams (WatchJobs, followed logs): the gate stops."""
        self.closing = True
        for queue in self.watchers:
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)

    async def poll(self) -> None:
        """Look at every attempt that has not ended, for ever."""
        while True:
            for a in list(self.attempts.values()):
                try:
                    self.refresh(a)
                except OSError as e:  # a full disk, say: the next round tries again
                    print(f"attempt {a.record['attempt_id']}: {e}", file=sys.stderr)
            await asyncio.sleep(POLL)

    @unary
    async def Describe(self, request: pb.DescribeRequest, context: Ctx) -> pb.DescribeResponse:
        """Who the gate is and what it offers, whatever versions gantryd speaks."""
        return pb.DescribeResponse(
            name=self.name,
            provider="python-example",
            version=VERSION,
            api_versions=["gantry.v1"],
            capabilities=pb.Capabilities(staging=True, log_follow=True, secret_env=True),
            flavors=[self.flavor],
        )

    @unary
    async def CreatePartition(
        self, request: pb.CreatePartitionRequest, context: Ctx
    ) -> pb.CreatePartitionResponse:
        """A partition of this host: READY at once, one at a time."""
        partition_id = check_id("partition_id", request.partition_id)
        if partition_id not in self.partitions and partition_id not in self.deleted:
            if request.flavor != FLAVOR:
                raise Refused(INVALID, f"flavor: `{request.flavor}` is unknown; there is `host`")
            if len(self.partitions) >= self.flavor.max_partitions:
                raise Refused(EXHAUSTED, "flavor `host` allows 1 partition at a time")
            record = {
                "partition_id": partition_id,
                "flavor": FLAVOR,
                "labels": dict(request.labels),
            }
            write_json(self.work / "partitions" / f"{partition_id}.json", record)
            self.partitions[partition_id] = record
        # A repeat answers what the first made; a deleted id answers DELETED.
        return pb.CreatePartitionResponse(partition=self.partition(partition_id))

    @unary
    async def GetPartition(
        self, request: pb.GetPartitionRequest, context: Ctx
    ) -> pb.GetPartitionResponse:
        """One partition; NOT_FOUND when never made (or deleted long ago)."""
        partition_id = check_id("partition_id", request.partition_id)
        return pb.GetPartitionResponse(partition=self.partition(partition_id))

    @unary
    async def DeletePartition(
        self, request: pb.DeletePartitionRequest, context: Ctx
    ) -> pb.DeletePartitionResponse:
        """Forget the partition; its jobs are stopped and end CANCELLED."""
        partition_id = check_id("partition_id", request.partition_id)
        self.deleted.add(partition_id)  # first: a late CreatePartition must not make it again
        if self.partitions.pop(partition_id, None) is not None:
            (self.work / "partitions" / f"{partition_id}.json").unlink(missing_ok=True)
        for a in list(self.attempts.values()):
            if a.job.partition_id == partition_id:
                self.stop(a, "its partition was deleted")
        return pb.DeletePartitionResponse(partition=self.partition(partition_id))

    @unary
    async def ListPartitions(
        self, request: pb.ListPartitionsRequest, context: Ctx
    ) -> pb.ListPartitionsResponse:
        """Every partition not yet DELETED: also those DELETING while their jobs stop."""
        gone = {a.job.partition_id for a in self.running()} - set(self.partitions)
        listed = [*self.partitions, *sorted(p for p in gone if p in self.deleted)]
        return pb.ListPartitionsResponse(partitions=[self.partition(p) for p in listed])

    @unary
    async def StartJob(self, request: pb.StartJobRequest, context: Ctx) -> pb.StartJobResponse:
        """Start an attempt under a new shepherd, or answer the one started before.

        Nothing here awaits, so repeats that arrive together cannot both start it.
        """
        attempt_id = check_id("attempt_id", request.attempt_id)
        partition_id = check_id("partition_id", request.partition_id)
        if attempt_id in self.released:
            raise Refused(PRECONDITION, f"attempt `{attempt_id}` was released; it never runs again")
        if a := self.attempts.get(attempt_id):
            return pb.StartJobResponse(job=self.refresh(a))
        spec = self.check_task(request.task)
        if partition_id not in self.partitions:
            code = PRECONDITION if partition_id in self.deleted else NOT_FOUND
            raise Refused(code, f"partition `{partition_id}` is not here (unknown or deleted)")
        asked, capacity, running = request.task.resources, self.flavor.capacity, self.running()
        cpus = sum(a.record["cpus"] for a in running) + max(asked.cpus, 1)
        memory = sum(a.record["memory"] for a in running) + asked.memory_bytes
        if cpus > capacity.cpus or memory > capacity.memory_bytes:
            # Partition.queue is zero: nothing waits, gantryd tries again later.
            raise Refused(EXHAUSTED, f"not enough free CPUs or memory now ({len(running)} run)")
        record = {
            "attempt_id": attempt_id,
            "partition_id": partition_id,
            "job_id": request.task.job_id,
            "cpus": max(asked.cpus, 1),
            "memory": asked.memory_bytes,
        }
        return pb.StartJobResponse(job=self.launch(record, request.task, spec))

    def check_task(self, task: pb.Task) -> dict[str, Any]:
        """INVALID_ARGUMENT for a task this gate can never run, naming the field.

        Returns what the shepherd needs of it besides argv and env.
        """
        if bool(task.argv) == bool(task.script):
            raise Refused(INVALID, "task.argv, task.script: set exactly one of them")
        if task.argv and not task.argv[0]:
            raise Refused(INVALID, "task.argv[0]: must name a program")
        for field, env in (("task.env", task.env), ("task.secret_env", task.secret_env)):
            if any(not k or "=" in k or "\0" in k + v for k, v in env.items()):
                raise Refused(INVALID, f"{field}: a name is empty or has `=`, or a NUL is in it")
        if any("\0" in arg for arg in [*task.argv, task.script]):
            raise Refused(INVALID, "task.argv, task.script: must not contain NUL")
        if task.chdir:  # Capabilities.chdir is false
            raise Refused(INVALID, "task.chdir: this gate runs jobs only in their own directory")
        capacity, asked = self.flavor.capacity, task.resources
        if asked.nodes > 1 or asked.gpus or asked.cpus > capacity.cpus:
            raise Refused(INVALID, f"task.resources: this host has {capacity.cpus} CPUs, no GPU")
        tasks = max(task.tasks, 1)  # 0 is read as 1
        if asked.cpus % tasks or 0 < task.tasks_per_node < tasks:  # as the Rust harness
            raise Refused(INVALID, "task.tasks: CPUs must divide by tasks, all on one node")
        if asked.memory_bytes > capacity.memory_bytes:
            raise Refused(INVALID, f"task.resources: this host has {capacity.memory_bytes} bytes")
        warn = 0
        if task.warn_signal:
            try:
                warn = signal.Signals["SIG" + task.warn_signal].value
            except KeyError:
                raise Refused(
                    INVALID, f"task.warn_signal: no signal `{task.warn_signal}`"
                ) from None
            if not task.warn_seconds or not task.walltime_seconds:
                raise Refused(INVALID, "task.warn_seconds: a warning needs it and a walltime")
        stdin = str(safe_path("task.stdin", task.stdin)) if task.stdin else None
        return {
            "walltime": task.walltime_seconds,
            "warn_signal": warn,
            "warn_seconds": task.warn_seconds,
            "stdin": stdin,
            "grace": GRACE,
        }

    def launch(self, record: dict[str, Any], task: pb.Task, spec: dict[str, Any]) -> pb.GateJob:
        """Write the attempt's record, then start its shepherd, holding its lock."""
        home = self.work / "attempts" / record["attempt_id"]
        (home / "work").mkdir(parents=True, exist_ok=True)  # may hold staged files already
        argv = list(task.argv)
        if task.script:  # run by /bin/sh, or by its own #! line
            script = home / "script"
            script.write_text(task.script)
            script.chmod(0o755)
            argv = [str(script)] if task.script.startswith("#!") else ["/bin/sh", str(script)]
        env = {**login_env(), **task.env, **task.secret_env}  # secrets win over env
        env |= {
            "GANTRY_JOB_ID": str(task.job_id),
            "GANTRY_ATTEMPT_ID": record["attempt_id"],
            "GANTRY_PARTITION_ID": record["partition_id"],
            "GANTRY_NTASKS": str(max(task.tasks, 1)),
            "GANTRY_NODELIST": socket.gethostname(),
        }
        spec |= {"dir": str(home), "cwd": str(home / "work"), "argv": argv, "env": env}
        write_json(home / "attempt.json", record)
        a = Attempt(home, record, pb.GateJob())
        lock = os.open(home / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:  # the shepherd inherits the locked file: seen alive from its first moment
            fcntl.flock(lock, fcntl.LOCK_EX)
            with open(home / "shepherd.log", "ab") as log:
                a.shepherd = subprocess.Popen(
                    [sys.executable, str(SHEPHERD)],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=log,
                    cwd=home,
                    env=login_env(),
                    pass_fds=(lock,),
                    start_new_session=True,  # outlives the gate, away from its signals
                )
        except OSError:
            (home / "attempt.json").unlink(missing_ok=True)  # nothing runs: a retry starts anew
            raise
        finally:
            os.close(lock)
        assert a.shepherd.stdin is not None
        try:  # secrets go to the shepherd through this pipe only, never to disk
            a.shepherd.stdin.write(json.dumps(spec).encode())
            a.shepherd.stdin.close()
        except BrokenPipeError:
            pass  # it died at once: observe() says lost
        self.attempts[record["attempt_id"]] = a
        return self.refresh(a)

    @unary
    async def GetJob(self, request: pb.GateGetJobRequest, context: Ctx) -> pb.GateGetJobResponse:
        """One attempt as it is now."""
        return pb.GateGetJobResponse(job=self.refresh(self.attempt(request.attempt_id)))

    @unary
    async def CancelJob(
        self, request: pb.GateCancelJobRequest, context: Ctx
    ) -> pb.GateCancelJobResponse:
        """Stop an attempt; the answer may still be RUNNING while it stops."""
        a = self.attempt(request.attempt_id)
        self.stop(a, "cancelled")
        return pb.GateCancelJobResponse(job=self.refresh(a))

    @unary
    async def ReleaseJob(
        self, request: pb.GateReleaseJobRequest, context: Ctx
    ) -> pb.GateReleaseJobResponse:
        """Forget an ended attempt: remove its directory, never start it again.

        Also frees the files staged for an attempt that never started.
        """
        attempt_id = check_id("attempt_id", request.attempt_id)
        a = self.attempts.get(attempt_id)
        if a is not None and self.refresh(a).state not in FINAL:
            raise Refused(PRECONDITION, f"attempt `{attempt_id}` has not ended; cancel it first")
        self.released.add(attempt_id)
        if a is not None:
            a.released = True
            del self.attempts[attempt_id]
        home = self.work / "attempts" / attempt_id
        if home.exists():
            trash = self.work / "trash" / f"{attempt_id}.{uuid.uuid4().hex}"
            home.rename(trash)
            await asyncio.to_thread(shutil.rmtree, trash, True)
        return pb.GateReleaseJobResponse()

    @streaming
    async def WatchJobs(
        self, request: pb.WatchJobsRequest, context: Ctx
    ) -> AsyncIterator[pb.WatchJobsResponse]:
        """Every unreleased attempt, then each change; the stream never ends.

        The listing's last batch has initial_done (it may be empty). A watcher
        that falls behind gets a full listing again (gate.proto allows it).
        """
        while True:
            queue: asyncio.Queue[pb.GateJob | None] = asyncio.Queue(WATCH_BUFFER)
            self.watchers.add(queue)  # before listing: no change falls between the two
            try:
                jobs = [self.refresh(a) for a in list(self.attempts.values())]
                for at in range(0, max(len(jobs), 1), 1000):
                    last = at + 1000 >= len(jobs)
                    yield pb.WatchJobsResponse(jobs=jobs[at : at + 1000], initial_done=last)
                while (job := await queue.get()) is not None:
                    yield pb.WatchJobsResponse(jobs=[job])
                if self.closing:
                    return
            finally:
                self.watchers.discard(queue)

    @streaming
    async def ReadLogs(
        self, request: pb.GateReadLogsRequest, context: Ctx
    ) -> AsyncIterator[pb.GateReadLogsResponse]:
        """A log from an offset; with follow, until the attempt ends, then eof."""
        names = {common.LOG_STREAM_STDOUT: "stdout", common.LOG_STREAM_STDERR: "stderr"}
        check_id("attempt_id", request.attempt_id)
        if request.stream not in names:
            raise Refused(INVALID, "stream: give LOG_STREAM_STDOUT or LOG_STREAM_STDERR")
        a = self.attempt(request.attempt_id)
        path, offset, stream = a.home / names[request.stream], request.offset, request.stream
        while True:
            done = a.released or self.refresh(a).state in FINAL  # looked at before reading
            while data := read_at(path, offset):
                yield pb.GateReadLogsResponse(
                    chunk=common.LogChunk(stream=stream, offset=offset, data=data)
                )
                offset += len(data)
            if not request.follow or self.closing:
                return  # no eof without follow
            if done:
                eof = common.LogChunk(stream=stream, offset=offset, eof=True)
                yield pb.GateReadLogsResponse(chunk=eof)
                return
            await asyncio.sleep(FOLLOW)

    @unary
    async def StageIn(
        self, request: AsyncIterator[pb.StageInRequest], context: Ctx
    ) -> pb.StageInResponse:
        """Write files into the working directory of an attempt not started yet."""
        messages = aiter(request)
        first = await anext(messages, None)
        if first is None:
            raise Refused(INVALID, "attempt_id: the first message must name the attempt")
        attempt_id = check_id("attempt_id", first.attempt_id)
        partition_id = check_id("partition_id", first.partition_id)
        self.partition(partition_id)  # NOT_FOUND when unknown
        top = self.work / "attempts" / attempt_id / "work"
        files, size, current = 0, 0, None
        try:
            message: pb.StageInRequest | None = first  # which may carry a chunk too
            while message is not None:
                if attempt_id in self.attempts or attempt_id in self.released:
                    raise Refused(PRECONDITION, f"attempt `{attempt_id}` started (or was released)")
                if partition_id not in self.partitions:
                    raise Refused(PRECONDITION, f"partition `{partition_id}` was deleted")
                chunk = message.chunk
                if len(chunk.data) > CHUNK:
                    raise Refused(INVALID, f"chunk.data: more than {CHUNK} bytes")
                if chunk.path:  # the first chunk of a file; mode 0 means 0644 (common.proto)
                    rel = safe_path("chunk.path", chunk.path)
                    if current is not None:
                        current.close()
                    top.mkdir(parents=True, exist_ok=True)
                    current = create_file(top, rel, (chunk.mode & 0o777) or 0o644)
                    files += 1
                elif message.HasField("chunk") and current is None:
                    raise Refused(INVALID, "chunk.path: the first chunk of a file must name it")
                if current is not None:
                    current.write(chunk.data)
                    size += len(chunk.data)
                message = await anext(messages, None)
        finally:
            if current is not None:
                current.close()
        return pb.StageInResponse(files=files, bytes=size)

    @streaming
    async def StageOut(
        self, request: pb.StageOutRequest, context: Ctx
    ) -> AsyncIterator[pb.StageOutResponse]:
        """The regular files of an ended attempt that match the globs, in name order."""
        check_id("attempt_id", request.attempt_id)
        if not request.globs:
            raise Refused(INVALID, "globs: give at least one, e.g. out/** or *.csv")
        globs = [glob_regex(f"globs[{i}]", g) for i, g in enumerate(request.globs)]
        a = self.attempt(request.attempt_id)
        if self.refresh(a).state not in FINAL:
            raise Refused(PRECONDITION, f"attempt `{request.attempt_id}` has not ended")
        for rel, path in regular_files(a.home / "work"):
            if any(g.fullmatch(rel) for g in globs):
                for chunk in file_chunks(path, rel):
                    yield pb.StageOutResponse(chunk=chunk)

    @streaming
    async def ForwardPort(
        self, request: AsyncIterator[pb.GateForwardPortRequest], context: Ctx
    ) -> AsyncIterator[pb.GateForwardPortResponse]:
        """Not offered (Capabilities.port_forward is false): UNIMPLEMENTED."""
        raise Refused(grpc.StatusCode.UNIMPLEMENTED, "this gate does not forward ports")
        yield pb.GateForwardPortResponse()  # never reached: it makes this a stream


async def serve(args: argparse.Namespace) -> None:
    """Listen with mTLS, announce the address, serve until SIGTERM or SIGINT."""
    pki: Path = args.pki_dir
    gate = Gate(args.name, (pki / "installation").read_text().strip(), args.work_dir.resolve())
    limit = 16 << 20  # gantryd's message size limit
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    server = grpc.aio.server(options=options)
    gate_pb2_grpc.add_GateServicer_to_server(gate, server)
    key = (pki / f"gate-{args.name}.key").read_bytes()
    cert = (pki / f"gate-{args.name}.pem").read_bytes()  # names gate/NAME: gantryd checks it
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=(pki / "ca.pem").read_bytes(), require_client_auth=True
    )
    port = server.add_secure_port(args.listen, credentials)
    await server.start()
    address = f"{args.listen.rsplit(':', 1)[0]}:{port}"
    if args.ready_file:
        write_file(args.ready_file, address.encode())
    print(f"gate {args.name} listening on {address}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    poller = asyncio.create_task(gate.poll())
    await stop.wait()
    gate.close()
    poller.cancel()
    await server.stop(1)  # jobs keep running under their shepherds


def main() -> None:
    """Parse the command line (the flags every Gantry gate takes) and serve."""
    parser = argparse.ArgumentParser(description="A Gantry gate running jobs on this machine.")
    parser.add_argument("--name", required=True, help="site name; its certificate names gate/NAME")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port; port 0 picks one")
    parser.add_argument("--ready-file", type=Path, help="write the bound host:port here")
    parser.add_argument(
        "--pki-dir", type=Path, required=True, help="ca.pem, gate-NAME.*, installation"
    )
    parser.add_argument("--work-dir", type=Path, required=True, help="where its records are kept")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
