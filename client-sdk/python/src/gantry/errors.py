"""The SDK's exceptions: each gRPC status gantryd answers with is a class of its own.

Every exception carries gantryd's message, which says what to do; an
:class:`InvalidArgument` also names the request field that is wrong
(``resources.memory``).
"""

from __future__ import annotations

import grpc

from .v1 import client_pb2

__all__ = [
    "AlreadyExists",
    "ConfigError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "GantryError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "WaitTimeout",
    "from_rpc_error",
]


class GantryError(Exception):
    """Anything that went wrong talking to gantryd.

    ``code`` is the gRPC status code (``None`` for errors that happened before
    a call, such as a missing profile) and ``message`` gantryd's words.
    """

    code: grpc.StatusCode | None = None

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ConfigError(GantryError):
    """No usable configuration: the message says what to set or start."""


class InvalidArgument(GantryError):
    """A request was refused as invalid; ``field`` names the field (e.g. ``resources.memory``)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message, code=code)
        field, sep, _ = message.partition(": ")
        #: The request field gantryd refused, or ``""`` when it named none.
        self.field = field if sep and " " not in field else ""


class NotFound(GantryError):
    """No such job, or one the caller may not see."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(GantryError):
    """What the call would create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(GantryError):
    """The caller's identity may not do this (e.g. act for another user)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(GantryError):
    """gantryd could not tell who the caller is from its certificate."""

    code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(GantryError):
    """The job's state does not allow the call (e.g. holding a running job)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(GantryError):
    """gantryd cannot take more now (e.g. its database disk is full)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(GantryError):
    """gantryd cannot be reached or refuses changes for now; a retry may succeed."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(GantryError):
    """A call took longer than its deadline."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(GantryError):
    """gantryd failed in a way its log explains (a bug to report)."""

    code = grpc.StatusCode.INTERNAL


class WaitTimeout(GantryError, TimeoutError):
    """``wait`` gave up before the job ended; ``job`` is its last known state."""

    def __init__(self, message: str, job: client_pb2.Job | None = None) -> None:
        super().__init__(message)
        #: The job as last seen (``None`` when gantryd never answered).
        self.job = job

    def __reduce__(self) -> tuple[type[WaitTimeout], tuple[str, client_pb2.Job | None]]:
        return (WaitTimeout, (self.message, self.job))


_BY_CODE: dict[grpc.StatusCode, type[GantryError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        Unauthenticated,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Internal,
    )
    if cls.code is not None
}


def from_rpc_error(error: grpc.RpcError, address: str = "") -> GantryError:
    """The SDK exception for a failed gRPC call (sync or asyncio)."""
    code: grpc.StatusCode = error.code()
    details: str | None = error.details()
    message = (details or "").replace("\n", " ").strip()
    if code == grpc.StatusCode.UNAVAILABLE:
        where = f" at {address}" if address else ""
        message = f"gantryd{where} unavailable: {message or 'no answer'}"
    elif not message:
        message = f"gantryd answered {code.name}"
    cls = _BY_CODE.get(code, GantryError)
    return cls(message, code=code)


def is_retryable(error: GantryError) -> bool:
    """Whether a call that failed so is safe and useful to try again."""
    return isinstance(error, Unavailable)
