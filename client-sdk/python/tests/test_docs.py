"""Every Python example in docs/python.md runs, as a user would run it, against a real gantryd."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from installation import ROOT, Installation

GUIDE = ROOT / "docs" / "python.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.DOTALL)


def test_the_guide_has_examples() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_an_example_of_the_guide_runs(
    example: str, installation: Installation, tmp_path: Path
) -> None:
    # The acting-for example runs as the Hub's service identity, the others as alice.
    who = ("service", "jupyterhub") if "on_behalf_of" in example else ("user", "alice")
    env = {**os.environ, "GANTRY_PROFILE": str(installation.profile(*who))}
    for name in ("GANTRY_ADDR", "GANTRY_CA", "GANTRY_CERT", "GANTRY_KEY"):
        env.pop(name, None)
    ran = subprocess.run(
        [sys.executable, "-c", example],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, f"{example}\n--- stderr:\n{ran.stderr}"
