from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from installation import Installation

import gantry
import gantry.aio


@pytest.fixture(scope="session")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    running = Installation(tmp_path_factory.mktemp("gantry"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def alice(installation: Installation) -> Iterator[gantry.Client]:
    with gantry.Client(installation.config("user", "alice")) as client:
        yield client


@pytest.fixture
def bob(installation: Installation) -> Iterator[gantry.Client]:
    with gantry.Client(installation.config("user", "bob")) as client:
        yield client


@pytest.fixture
def hub(installation: Installation) -> Iterator[gantry.Client]:
    with gantry.Client(installation.config("service", "jupyterhub")) as client:
        yield client


@pytest.fixture
async def aio_alice(installation: Installation) -> AsyncIterator[gantry.aio.Client]:
    async with gantry.aio.Client(installation.config("user", "alice")) as client:
        yield client


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
