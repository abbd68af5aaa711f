"""The shepherd of one attempt: runs its job, stops it when told, records its end.

gate.py starts one shepherd per attempt, in a session of its own, so that
jobs outlive the gate (a gate killed with SIGKILL and started again finds
them still running). The gate writes the job's description as one JSON
object to the shepherd's stdin: secrets travel only that way and are never
written to disk. The shepherd inherits the gate's exclusive `flock` on the
attempt's `lock` file and holds it until it exits, so the gate knows it is
alive by trying that lock.

The files of an attempt directory, the whole protocol between the two:
  lock          held by the shepherd while it lives
  started.json  {"pid", "start_ms"}: written once the job runs
  cancel        written by the gate: stop the job; its text is the reason
  exit.json     {"state", "exit_code", "reason", "end_ms", "lost"}: how it ended
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

LOCK = "lock"
STARTED = "started.json"
CANCEL = "cancel"
EXIT = "exit.json"
TICK = 0.1  # how often the shepherd looks at the cancel file and the clock


def now_ms() -> int:
    """Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


def write_file(path: Path, data: bytes) -> None:
    """Write `path` atomically and durably: a temporary file, fsync, rename, fsync."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write `value` as JSON to `path`, atomically and durably."""
    write_file(path, json.dumps(value).encode())


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when there is none (yet)."""
    try:
        value: dict[str, Any] = json.loads(path.read_bytes())
        return value
    except (FileNotFoundError, ValueError):
        return None


def ended(state: str, exit_code: int | None, reason: str, lost: bool = False) -> dict[str, Any]:
    """An exit record."""
    return {
        "state": state,
        "exit_code": exit_code,
        "reason": reason,
        "end_ms": now_ms(),
        "lost": lost,
    }


def start(spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start the job in its working directory, in a process group of its own."""
    home, cwd = Path(spec["dir"]), Path(spec["cwd"])
    with ExitStack() as files:
        stdin = None
        if spec["stdin"]:
            try:
                stdin = files.enter_context(open(cwd / spec["stdin"], "rb"))
            except OSError as e:
                raise OSError(
                    e.errno, f"cannot open its stdin `{spec['stdin']}`: {e.strerror}"
                ) from None
        out = files.enter_context(open(home / "stdout", "wb"))
        err = files.enter_context(open(home / "stderr", "wb"))
        # With `env` given, Popen looks argv[0] up in the job's own PATH.
        return subprocess.Popen(
            spec["argv"],
            cwd=cwd,
            env=spec["env"],
            stdin=stdin or subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            process_group=0,
        )


def kill_group(pgid: int, signum: int) -> None:
    """Send `signum` to the job's process group, if any of it is left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def supervise(job: subprocess.Popen[bytes], spec: dict[str, Any], cancel: Path) -> dict[str, Any]:
    """Wait for the job to end and say how it ended.

    Stops it on cancel or at its walltime (SIGTERM, then SIGKILL after the
    grace) and sends the warning signal before the walltime.
    """
    began = time.monotonic()
    deadline = began + spec["walltime"] if spec["walltime"] else None
    warn_at = None
    if deadline is not None and spec["warn_signal"]:
        warn_at = deadline - spec["warn_seconds"]
    stop: tuple[str, str] | None = None  # (state, reason) once the shepherd stops it
    kill_at = None
    while True:
        try:
            code = job.wait(timeout=TICK)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if warn_at is not None and now >= warn_at:
            kill_group(job.pid, spec["warn_signal"])
            warn_at = None
        if stop is None and cancel.exists():
            stop = ("CANCELLED", cancel.read_text() or "cancelled")
        elif stop is None and deadline is not None and now >= deadline:
            # gate.proto: FAILED, not lost, reason starting "walltime exceeded".
            stop = ("FAILED", "walltime exceeded")
        if stop is not None and kill_at is None:
            kill_group(job.pid, signal.SIGTERM)
            kill_at = now + spec["grace"]
        if kill_at is not None and now >= kill_at:
            kill_group(job.pid, signal.SIGKILL)
    kill_group(job.pid, signal.SIGKILL)  # what the job left behind ends with it
    exit_code = 128 - code if code < 0 else code  # 128+N for signal N
    if stop is not None:
        return ended(stop[0], exit_code, stop[1])
    if code == 0:
        return ended("SUCCEEDED", 0, "")
    if code < 0:
        name = signal.Signals(-code).name
        return ended("FAILED", exit_code, f"killed by signal {-code} ({name})")
    return ended("FAILED", exit_code, f"exit code {code}")


def main() -> None:
    """Read the job from stdin, run it, write its exit record."""
    spec: dict[str, Any] = json.load(sys.stdin)
    sys.stdin.close()
    home = Path(spec["dir"])
    cancel = home / CANCEL
    if cancel.exists():  # cancelled before it started: no process ran, no exit code
        write_json(home / EXIT, ended("CANCELLED", None, cancel.read_text() or "cancelled"))
        return
    try:
        job = start(spec)
    except OSError as e:
        # The job's own doing (a missing program or stdin file): FAILED, not lost.
        why = e.strerror if e.filename is None else f"{e.filename}: {e.strerror}"
        write_json(home / EXIT, ended("FAILED", None, f"cannot start: {why}"))
        return
    write_json(home / STARTED, {"pid": job.pid, "start_ms": now_ms()})
    write_json(home / EXIT, supervise(job, spec, cancel))


if __name__ == "__main__":
    main()
