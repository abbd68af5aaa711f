"""The asyncio client: :class:`Client`, with the same methods as ``gantry.Client``, awaited.

Built on ``grpc.aio``; nothing blocks the event loop (JupyterHub's, a
notebook's). Iterators (``list``, ``events``, ``logs``) are async iterators.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import sys
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import grpc
import grpc.aio

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover
    from typing_extensions import Unpack

from . import _common
from ._config import Config
from ._forward_aio import PortForward
from .errors import GantryError, Unavailable, WaitTimeout, from_rpc_error
from .v1 import client_pb2, client_pb2_grpc, common_pb2

__all__ = ["Client", "PortForward"]


class Client:
    """An asyncio connection to gantryd over mTLS gRPC, for one identity.

    Found and configured as ``gantry.Client``. Use ``async with``, or await
    :meth:`close`. Create it in the event loop that uses it.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config.discover()
        self._channel = grpc.aio.secure_channel(
            self.config.target, _common.credentials(self.config), _common.channel_options()
        )
        #: The generated stub, for calls this class does not wrap.
        self.stub = client_pb2_grpc.GantryStub(self._channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection."""
        await self._channel.close()

    def _error(self, error: grpc.RpcError) -> GantryError:
        return from_rpc_error(error, self.config.target)

    # Submitting

    async def submit(
        self,
        argv: Sequence[str] | None = None,
        *,
        inputs: Mapping[str, str | os.PathLike[str]] | None = None,
        on_behalf_of: str = "",
        request_id: str | None = None,
        **fields: Unpack[_common.SpecFields],
    ) -> client_pb2.Job:
        """Submit a job, as ``gantry.Client.submit``."""
        uploaded = [
            _common.input_file(await self.upload(local), dest, local)
            for dest, local in _common.input_paths(inputs)
        ]
        spec = _common.build_spec(argv, uploaded, fields)
        return await self.submit_spec(spec, on_behalf_of=on_behalf_of, request_id=request_id)

    async def submit_spec(
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
                return (await self.stub.SubmitJob(request)).job
            except grpc.RpcError as e:
                error = self._error(e)
                await self._backoff(error, delays)

    async def upload(self, path: str | os.PathLike[str]) -> str:
        """Store a local file in gantryd; returns its digest for ``JobSpec.inputs``."""
        path = Path(path)
        file = await asyncio.to_thread(_common.open_input, path)
        reader = _common.InputReader(path, file)
        try:
            answer = await self.stub.UploadInput(reader.requests_async())
        except (grpc.RpcError, asyncio.CancelledError) as e:
            failure = reader.failure()
            if failure is not None:
                raise failure from None
            if isinstance(e, asyncio.CancelledError):
                raise
            raise self._error(e) from None
        finally:
            file.close()
        return answer.digest

    # Reading and changing jobs

    async def get(self, job_id: int, *, index: int | None = None) -> client_pb2.Job:
        """A job with its current state; with ``index``, that task of array ``job_id``."""
        request = client_pb2.GetJobRequest(job_id=job_id)
        if index is not None:
            request.array_index = index
        try:
            return (await self.stub.GetJob(request)).job
        except grpc.RpcError as e:
            raise self._error(e) from None

    async def list(
        self,
        *,
        states: Iterable[common_pb2.JobState.ValueType | str] = (),
        owner: str = "",
        site: str = "",
        labels: Mapping[str, str] | None = None,
        array_id: int = 0,
        group_arrays: bool = False,
        page_size: int = 100,
    ) -> AsyncIterator[client_pb2.Job]:
        """Jobs matching every filter, newest first, fetched a page at a time."""
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
                page = await self.stub.ListJobs(request)
            except grpc.RpcError as e:
                raise self._error(e) from None
            for job in page.jobs:
                yield job
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def cancel(self, job_id: int, reason: str = "") -> client_pb2.Job:
        """Cancel a job (an array's id: all its tasks); an ended job is returned as it ended."""
        request = client_pb2.CancelJobRequest(job_id=job_id, reason=reason)
        try:
            return (await self.stub.CancelJob(request)).job
        except grpc.RpcError as e:
            raise self._error(e) from None

    async def hold(self, job_id: int) -> client_pb2.Job:
        """Keep a queued job (or an array's queued tasks) from starting until released."""
        try:
            return (await self.stub.HoldJob(client_pb2.HoldJobRequest(job_id=job_id))).job
        except grpc.RpcError as e:
            raise self._error(e) from None

    async def release(self, job_id: int) -> client_pb2.Job:
        """Undo a hold."""
        try:
            return (await self.stub.ReleaseJob(client_pb2.ReleaseJobRequest(job_id=job_id))).job
        except grpc.RpcError as e:
            raise self._error(e) from None

    # Following jobs

    async def events(
        self,
        job_ids: Iterable[int] = (),
        *,
        after_seq: int = 0,
        follow: bool = False,
    ) -> AsyncIterator[client_pb2.JobEvent]:
        """Job events after ``after_seq``, in order, resumed across broken connections."""
        ids = list(job_ids)
        last = after_seq
        delays = _common.backoff_delays()
        while True:
            request = client_pb2.WatchEventsRequest(after_seq=last, job_ids=ids, follow=follow)
            try:
                async for batch in self.stub.WatchEvents(request):
                    delays = _common.backoff_delays()
                    for event in batch.events:
                        if event.seq > last:
                            last = event.seq
                            yield event
                if not follow:
                    return
                error: GantryError = Unavailable("gantryd closed the event stream")
            except grpc.RpcError as e:
                error = self._error(e)
            await self._backoff(error, delays)

    async def wait(self, job_id: int, timeout: float | None = None) -> client_pb2.Job:
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
                request = client_pb2.GetJobRequest(job_id=job_id)
                job = (await self.stub.GetJob(request, timeout=left)).job
                if _common.is_end_state(job.state):
                    return job
                if job.HasField("array"):
                    await asyncio.sleep(clock.at_most(_common.ARRAY_POLL))
                    continue
                ended = False
                async for batch in self.stub.WatchEvents(_common.end_watch(job), timeout=left):
                    if _common.ends(batch):
                        ended = True
                        break
                if not ended:
                    # The stream closed before the job ended: gantryd is going away.
                    raise Unavailable("gantryd closed the event stream")
                delays = _common.backoff_delays()
            except grpc.RpcError as e:
                error = self._error(e)
                if error.code != grpc.StatusCode.DEADLINE_EXCEEDED:
                    await self._backoff(error, delays, clock)
            except Unavailable as error:
                await self._backoff(error, delays, clock)

    @staticmethod
    async def _backoff(
        error: GantryError, delays: Iterator[float], clock: _common.Deadline | None = None
    ) -> None:
        """Sleep before retrying after a retryable ``error`` (within ``clock``), or raise it."""
        delay = next(delays, None) if isinstance(error, Unavailable) else None
        if delay is None:
            raise error from None
        await asyncio.sleep(clock.at_most(delay) if clock is not None else delay)

    async def logs(
        self,
        job_id: int,
        *,
        stream: str = "stdout",
        offset: int = 0,
        follow: bool = False,
    ) -> AsyncIterator[bytes]:
        """A job's ``"stdout"`` or ``"stderr"`` from byte ``offset``, resumed across breaks."""
        which = _common.log_stream(stream)
        position = offset
        delays = _common.backoff_delays()
        while True:
            request = client_pb2.ReadLogsRequest(
                job_id=job_id, stream=which, offset=position, follow=follow
            )
            try:
                async for response in self.stub.ReadLogs(request):
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
                error = self._error(e)
            await self._backoff(error, delays)

    async def download_outputs(
        self, job_id: int, dest: str | os.PathLike[str]
    ) -> builtins.list[Path]:
        """Write an ended job's output files under ``dest``, keeping paths and modes."""
        writer = _common.OutputWriter(dest)
        try:
            request = client_pb2.DownloadOutputsRequest(job_id=job_id)
            async for response in self.stub.DownloadOutputs(request):
                writer.add(response.chunk)
        except grpc.RpcError as e:
            raise self._error(e) from None
        finally:
            writer.close()
        return writer.written

    # Reaching a job

    async def forward(
        self, job_id: int, port: int, *, local_port: int = 0, host: str = "127.0.0.1"
    ) -> PortForward:
        """Listen locally for connections to a job's ``port``, as ``gantry.Client.forward``."""
        forward = PortForward(self.stub, self.config.target, job_id, port)
        return await forward._listen(host, local_port)

    # Sites

    async def sites(self) -> builtins.list[client_pb2.Site]:
        """Every configured site (gate) with its flavors, prices and health."""
        return list((await self.overview()).sites)

    async def overview(self) -> client_pb2.ListSitesResponse:
        """The sites and gantryd's own status (whether it accepts changes now)."""
        try:
            return await self.stub.ListSites(client_pb2.ListSitesRequest())
        except grpc.RpcError as e:
            raise self._error(e) from None
