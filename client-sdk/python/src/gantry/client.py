"""The synchronous client: :class:`Client`. ``gantry.aio.Client`` is its asyncio twin."""

from __future__ import annotations

import builtins
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import grpc

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover
    from typing_extensions import Unpack

from . import _common
from ._config import Config
from ._forward import PortForward
from .errors import GantryError, Unavailable, WaitTimeout, from_rpc_error
from .v1 import client_pb2, client_pb2_grpc, common_pb2


class Client:
    """A connection to gantryd over mTLS gRPC, for one identity.

    Without arguments it finds gantryd as the ``gantry`` CLI does
    (``GANTRY_ADDR``/``CA``/``CERT``/``KEY``, ``GANTRY_PROFILE``, the profile
    ``gantry dev`` writes); pass a :class:`gantry.Config` to choose. Use it as
    a context manager, or call :meth:`close`. Thread-safe.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config.discover()
        self._channel = grpc.secure_channel(
            self.config.target, _common.credentials(self.config), _common.channel_options()
        )
        #: The generated stub, for calls this class does not wrap.
        self.stub = client_pb2_grpc.GantryStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._channel.close()

    # Submitting

    def submit(
        self,
        argv: Sequence[str] | None = None,
        *,
        inputs: Mapping[str, str | os.PathLike[str]] | None = None,
        on_behalf_of: str = "",
        request_id: str | None = None,
        **fields: Unpack[_common.SpecFields],
    ) -> client_pb2.Job:
        """Submit a job: ``argv`` (run without a shell) or ``script=``, and what it needs.

        ``inputs`` maps a path in the job's working directory to a local file,
        uploaded first. The call is retried with the same request id for about
        30 s while gantryd is unavailable, so it never makes two jobs; pass your
        own ``request_id`` to make a later submit of the same logical job
        return the first one. A service allowed to act for users names the
        job's owner in ``on_behalf_of``. Returns the job as stored (for an
        array, the array as a whole).
        """
        uploaded = [
            _common.input_file(self.upload(local), dest, local)
            for dest, local in _common.input_paths(inputs)
        ]
        spec = _common.build_spec(argv, uploaded, fields)
        return self.submit_spec(spec, on_behalf_of=on_behalf_of, request_id=request_id)

    def submit_spec(
        self,
        spec: client_pb2.JobSpec,
        *,
        on_behalf_of: str = "",
        request_id: str | None = None,
    ) -> client_pb2.Job:
        """Submit a ready ``JobSpec``, retried as :meth:`submit` is."""
        request = client_pb2.SubmitJobRequest(
            spec=spec,
            client_request_id=request_id or _common.request_id(),
            on_behalf_of=on_behalf_of,
        )
        delays = _common.backoff_delays()
        while True:
            try:
                return self.stub.SubmitJob(request).job
            except grpc.RpcError as e:
                error = from_rpc_error(e, self.config.target)
                self._backoff(error, delays)

    def upload(self, path: str | os.PathLike[str]) -> str:
        """Store a local file in gantryd; returns its digest for ``JobSpec.inputs``."""
        path = Path(path)
        with _common.open_input(path) as file:
            reader = _common.InputReader(path, file)
            try:
                answer = self.stub.UploadInput(reader.requests())
            except grpc.RpcError as e:
                raise reader.failure() or from_rpc_error(e, self.config.target) from None
        return answer.digest

    # Reading and changing jobs

    def get(self, job_id: int, *, index: int | None = None) -> client_pb2.Job:
        """A job with its current state; with ``index``, that task of array ``job_id``."""
        request = client_pb2.GetJobRequest(job_id=job_id)
        if index is not None:
            request.array_index = index
        try:
            return self.stub.GetJob(request).job
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.config.target) from None

    def list(
        self,
        *,
        states: Iterable[common_pb2.JobState.ValueType | str] = (),
        owner: str = "",
        site: str = "",
        labels: Mapping[str, str] | None = None,
        array_id: int = 0,
        group_arrays: bool = False,
        page_size: int = 100,
    ) -> Iterator[client_pb2.Job]:
        """Jobs matching every filter, newest first, fetched a page at a time.

        ``states`` takes enum values or names (``"running"``). Users see their
        own jobs; admins and services acting for users may name an ``owner``.
        """
        request = client_pb2.ListJobsRequest(
            states=_common.parse_states(states),
            owner=owner,
            site=site,
            labels=dict(labels or {}),
            array_id=array_id,
            group_arrays=group_arrays,
            page_size=page_size,
        )
        while True:
            try:
                page = self.stub.ListJobs(request)
            except grpc.RpcError as e:
                raise from_rpc_error(e, self.config.target) from None
            yield from page.jobs
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def cancel(self, job_id: int, reason: str = "") -> client_pb2.Job:
        """Cancel a job (an array's id: all its tasks); an ended job is returned as it ended."""
        request = client_pb2.CancelJobRequest(job_id=job_id, reason=reason)
        try:
            return self.stub.CancelJob(request).job
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.config.target) from None

    def hold(self, job_id: int) -> client_pb2.Job:
        """Keep a queued job (or an array's queued tasks) from starting until released."""
        try:
            return self.stub.HoldJob(client_pb2.HoldJobRequest(job_id=job_id)).job
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.config.target) from None

    def release(self, job_id: int) -> client_pb2.Job:
        """Undo a hold."""
        try:
            return self.stub.ReleaseJob(client_pb2.ReleaseJobRequest(job_id=job_id)).job
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.config.target) from None

    # Following jobs

    def events(
        self,
        job_ids: Iterable[int] = (),
        *,
        after_seq: int = 0,
        follow: bool = False,
    ) -> Iterator[client_pb2.JobEvent]:
        """Job events after sequence number ``after_seq``, in order; only ``job_ids``' if given.

        With ``follow`` the iterator waits for new events. A broken connection
        is resumed from the last event delivered: none is lost or repeated.
        Resume later by passing the last event's ``seq`` as ``after_seq``.
        """
        ids = list(job_ids)
        last = after_seq
        delays = _common.backoff_delays()
        while True:
            request = client_pb2.WatchEventsRequest(after_seq=last, job_ids=ids, follow=follow)
            try:
                for batch in self.stub.WatchEvents(request):
                    delays = _common.backoff_delays()
                    for event in batch.events:
                        if event.seq > last:
                            last = event.seq
                            yield event
                if not follow:
                    return
                error: GantryError = Unavailable("gantryd closed the event stream")
            except grpc.RpcError as e:
                error = from_rpc_error(e, self.config.target)
            self._backoff(error, delays)

    def wait(self, job_id: int, timeout: float | None = None) -> client_pb2.Job:
        """Wait until the job (or every task of an array) has ended; returns it as it ended.

        Raises :class:`gantry.WaitTimeout` (a ``TimeoutError``) after ``timeout``
        seconds. A broken connection is retried for about 30 s, as other calls are.
        """
        clock = _common.Deadline(timeout)
        delays = _common.backoff_delays()
        job: client_pb2.Job | None = None
        while True:
            left = clock.left()
            if left is not None and left <= 0:
                raise WaitTimeout(_common.still_running(job_id, job, timeout), job)
            try:
                job = self.stub.GetJob(client_pb2.GetJobRequest(job_id=job_id), timeout=left).job
                if _common.is_end_state(job.state):
                    return job
                if job.HasField("array"):
                    time.sleep(clock.at_most(_common.ARRAY_POLL))
                    continue
                watch = _common.end_watch(job)
                if not any(
                    _common.ends(batch) for batch in self.stub.WatchEvents(watch, timeout=left)
                ):
                    # The stream closed before the job ended: gantryd is going away.
                    raise Unavailable("gantryd closed the event stream")
                delays = _common.backoff_delays()
            except grpc.RpcError as e:
                error = from_rpc_error(e, self.config.target)
                if error.code != grpc.StatusCode.DEADLINE_EXCEEDED:
                    self._backoff(error, delays, clock)
            except Unavailable as error:
                self._backoff(error, delays, clock)

    @staticmethod
    def _backoff(
        error: GantryError, delays: Iterator[float], clock: _common.Deadline | None = None
    ) -> None:
        """Sleep before retrying after a retryable ``error`` (within ``clock``), or raise it."""
        delay = next(delays, None) if isinstance(error, Unavailable) else None
        if delay is None:
            raise error from None
        time.sleep(clock.at_most(delay) if clock is not None else delay)

    def logs(
        self,
        job_id: int,
        *,
        stream: str = "stdout",
        offset: int = 0,
        follow: bool = False,
    ) -> Iterator[bytes]:
        """A job's ``"stdout"`` or ``"stderr"`` from byte ``offset``, in pieces as written.

        With ``follow`` it goes on until the job ends. A broken connection is
        resumed at the next byte, so nothing is repeated or lost.
        """
        which = _common.log_stream(stream)
        position = offset
        delays = _common.backoff_delays()
        while True:
            request = client_pb2.ReadLogsRequest(
                job_id=job_id, stream=which, offset=position, follow=follow
            )
            try:
                for response in self.stub.ReadLogs(request):
                    delays = _common.backoff_delays()
                    chunk = response.chunk
                    data = chunk.data[max(0, position - chunk.offset) :]
                    if data:
                        position = chunk.offset + len(chunk.data)
                        yield data
                    if chunk.eof:
                        return
                if not follow:
                    return
                # A follow ends with `eof`; a stream closed before it broke.
                error: GantryError = Unavailable("gantryd closed the log stream")
            except grpc.RpcError as e:
                error = from_rpc_error(e, self.config.target)
            self._backoff(error, delays)

    def download_outputs(self, job_id: int, dest: str | os.PathLike[str]) -> builtins.list[Path]:
        """Write an ended job's output files under ``dest``, keeping paths and modes."""
        writer = _common.OutputWriter(dest)
        try:
            for response in self.stub.DownloadOutputs(
                client_pb2.DownloadOutputsRequest(job_id=job_id)
            ):
                writer.add(response.chunk)
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.config.target) from None
        finally:
            writer.close()
        return writer.written

    # Reaching a job

    def forward(
        self, job_id: int, port: int, *, local_port: int = 0, host: str = "127.0.0.1"
    ) -> PortForward:
        """Listen on ``host:local_port`` (0: any free port) for connections to a job's ``port``.

        Like ``gantry forward`` and ``ssh -L``: each connection reaches the
        port on the job's machine as the job's own processes reach it, through
        gantryd and the job's gate (a cloud machine accepts no inbound
        connection; this is how its servers are reached). The job must be
        running and its site able to forward (``Site.port_forward``); a
        refused connection is closed and logged. Returns at once; the
        :class:`gantry.PortForward`'s ``address`` is where to connect.
        """
        return PortForward(
            self.stub, self.config.target, job_id, port, host=host, local_port=local_port
        )

    # Sites

    def sites(self) -> builtins.list[client_pb2.Site]:
        """Every configured site (gate) with its flavors, prices and health."""
        return list(self.overview().sites)

    def overview(self) -> client_pb2.ListSitesResponse:
        """The sites and gantryd's own status (whether it accepts changes now)."""
        try:
            return self.stub.ListSites(client_pb2.ListSitesRequest())
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.config.target) from None
