"""Gantry's Python SDK: submit, watch and fetch compute jobs through gantryd.

``gantry.Client`` is synchronous; ``gantry.aio.Client`` has the same methods
for asyncio. Both find gantryd as the ``gantry`` CLI does, or take a
:class:`Config`. Jobs, events and sites are the wire's messages
(``gantry.v1.client_pb2``), re-exported here; failed calls raise the
exceptions of :mod:`gantry.errors`.

    import gantry

    with gantry.Client() as client:
        job = client.submit(["echo", "hello"], cpus=1, memory="256MiB")
        job = client.wait(job.id, timeout=60)
        print(gantry.state_name(job.state), b"".join(client.logs(job.id)))
"""

from ._common import SpecFields, is_end_state, parse_state, state_name
from ._config import Config, dev_state_dir
from ._forward import PortForward
from .client import Client
from .errors import (
    AlreadyExists,
    ConfigError,
    DeadlineExceeded,
    FailedPrecondition,
    GantryError,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    WaitTimeout,
)
from .v1.client_pb2 import (
    InputFile,
    Job,
    JobEvent,
    JobSpec,
    ListSitesResponse,
    ResourceRequest,
    Site,
)
from .v1.common_pb2 import Flavor, JobState, LogStream

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "Client",
    "Config",
    "ConfigError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Flavor",
    "GantryError",
    "InputFile",
    "Internal",
    "InvalidArgument",
    "Job",
    "JobEvent",
    "JobSpec",
    "JobState",
    "ListSitesResponse",
    "LogStream",
    "NotFound",
    "PermissionDenied",
    "PortForward",
    "ResourceExhausted",
    "ResourceRequest",
    "Site",
    "SpecFields",
    "Unauthenticated",
    "Unavailable",
    "WaitTimeout",
    "dev_state_dir",
    "is_end_state",
    "parse_state",
    "state_name",
]
