"""Port forwarding for the synchronous client: a local port that reaches a job's port."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from types import TracebackType

import grpc

from .errors import from_rpc_error
from .v1 import client_pb2, client_pb2_grpc

#: Bytes read from a local connection into one message.
CHUNK = 64 * 1024

log = logging.getLogger("gantry.forward")


class PortForward:
    """A listening socket on this machine whose connections reach ``port`` of job ``job_id``.

    Each accepted connection becomes one ForwardPort call through gantryd and
    the job's gate, to the job's machine as its own processes reach it. A
    connection gantryd refuses (the job does not run, nothing listens on the
    port yet) is closed and logged to the ``gantry.forward`` logger. Made by
    ``gantry.Client.forward``; close it (or use ``with``) to stop listening.
    """

    def __init__(
        self,
        stub: client_pb2_grpc.GantryStub,
        target: str,
        job_id: int,
        port: int,
        *,
        host: str = "127.0.0.1",
        local_port: int = 0,
    ) -> None:
        self._stub, self._target = stub, target
        self.job_id, self.port = job_id, port
        self._listener = socket.create_server((host, local_port))
        #: The local address connections are accepted on: (host, port).
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="gantry-forward", daemon=True).start()

    @property
    def local_port(self) -> int:
        """The local port connections are accepted on."""
        return self.address[1]

    def __enter__(self) -> PortForward:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting connections (those open go on until they end)."""
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._carry, args=(conn,), daemon=True).start()

    def _requests(self, conn: socket.socket) -> Iterator[client_pb2.ForwardPortRequest]:
        yield client_pb2.ForwardPortRequest(job_id=self.job_id, port=self.port)
        while True:
            try:
                data = conn.recv(CHUNK)
            except OSError:
                return
            if not data:
                return
            yield client_pb2.ForwardPortRequest(data=data)

    def _carry(self, conn: socket.socket) -> None:
        try:
            for response in self._stub.ForwardPort(self._requests(conn)):
                conn.sendall(response.data)
        except grpc.RpcError as e:
            error = from_rpc_error(e, self._target)
            log.warning("port %d of job %d: %s", self.port, self.job_id, error)
        except OSError:
            pass
        finally:
            _close_gently(conn)


def _close_gently(conn: socket.socket) -> None:
    """Close ``conn`` gently: say so first (FIN), then read what its peer still sends.

    Reading lasts a second at most. Closing with unread data would reset the
    connection, and the peer could lose what it was sent or see a reset
    instead of the end (a refused forward, seen on a busy machine).
    """
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1.0)
        while conn.recv(CHUNK):
            pass
    except OSError:
        pass
    finally:
        conn.close()
