from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The SDK's test installation: gantryd, the scheduler and the local gate.
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "client-sdk" / "python" / "tests"))

from installation import Installation


@pytest.fixture(scope="session")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    running = Installation(tmp_path_factory.mktemp("gantry"))
    try:
        yield running
    finally:
        running.stop()
