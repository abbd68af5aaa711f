"""A gate that speaks only `gantry.v0`: gantryd must show its site unhealthy, saying so.

Serves Describe over mTLS with the gate's certificate (every other RPC is
UNIMPLEMENTED, as the generated servicer has it). For tests only; run with a
Python that has grpcio and Gantry's SDK (its generated gantry.v1 modules):

    python old_api_gate.py --name NAME --listen 127.0.0.1:PORT --pki-dir DIR
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import grpc
from gantry.v1 import gate_pb2, gate_pb2_grpc


class OldGate(gate_pb2_grpc.GateServicer):
    """Answers Describe with api_versions ["gantry.v0"]."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def Describe(
        self, request: gate_pb2.DescribeRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> gate_pb2.DescribeResponse:
        """Who the gate is: a version gantryd does not speak."""
        return gate_pb2.DescribeResponse(
            name=self.name, provider="old", version="0.0.1", api_versions=["gantry.v0"]
        )


async def serve(name: str, listen: str, pki: Path) -> None:
    """Serve until killed."""
    credentials = grpc.ssl_server_credentials(
        [((pki / f"gate-{name}.key").read_bytes(), (pki / f"gate-{name}.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    server = grpc.aio.server()
    # The other RPCs stay the generated servicer's UNIMPLEMENTED on purpose.
    gate = OldGate(name)  # type: ignore[abstract]
    gate_pb2_grpc.add_GateServicer_to_server(gate, server)
    server.add_secure_port(listen, credentials)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--pki-dir", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.name, args.listen, args.pki_dir))


if __name__ == "__main__":
    main()
