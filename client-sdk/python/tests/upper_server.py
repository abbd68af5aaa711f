"""A job for port-forwarding tests: its server upper-cases what a client sends."""

from __future__ import annotations

#: The job's program: listen on a free loopback port, print it, answer each
#: connection with what it read, upper-cased, once the client half-closed.
SCRIPT = """
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    data = b""
    while piece := c.recv(65536):
        data += piece
    c.sendall(data.upper())
    c.close()
"""

ARGV = ["python3", "-c", SCRIPT]
