"""Port forwarding for the asyncio client: a local port that reaches a job's port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType

import grpc

from ._forward import CHUNK, log
from .errors import from_rpc_error
from .v1 import client_pb2, client_pb2_grpc


class PortForward:
    """An asyncio server on this machine whose connections reach ``port`` of job ``job_id``.

    As ``gantry.PortForward``, on the event loop: each accepted connection is
    one ForwardPort call; a refused one is closed and logged to the
    ``gantry.forward`` logger. Made by ``gantry.aio.Client.forward``; close
    it (or use ``async with``) to stop listening.
    """

    def __init__(
        self, stub: client_pb2_grpc.GantryAsyncStub, target: str, job_id: int, port: int
    ) -> None:
        self._stub, self._target = stub, target
        self.job_id, self.port = job_id, port
        self._server: asyncio.Server | None = None
        #: The local address connections are accepted on: (host, port).
        self.address: tuple[str, int] = ("", 0)

    async def _listen(self, host: str, local_port: int) -> PortForward:
        self._server = await asyncio.start_server(self._carry, host, local_port)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self

    @property
    def local_port(self) -> int:
        """The local port connections are accepted on."""
        return self.address[1]

    async def __aenter__(self) -> PortForward:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop accepting connections (those open go on until they end)."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    async def _requests(
        self, reader: asyncio.StreamReader
    ) -> AsyncIterator[client_pb2.ForwardPortRequest]:
        yield client_pb2.ForwardPortRequest(job_id=self.job_id, port=self.port)
        while data := await reader.read(CHUNK):
            yield client_pb2.ForwardPortRequest(data=data)

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        call = self._stub.ForwardPort(self._requests(reader))
        try:
            async for response in call:
                writer.write(response.data)
                await writer.drain()
        except grpc.RpcError as e:
            error = from_rpc_error(e, self._target)
            log.warning("port %d of job %d: %s", self.port, self.job_id, error)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            call.cancel()
            writer.close()
