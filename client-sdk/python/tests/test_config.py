"""Finding gantryd as the CLI does: variables, GANTRY_PROFILE, ``gantry dev``'s profile."""

from __future__ import annotations

from pathlib import Path

import pytest
from installation import Installation

import gantry

PROFILE = 'address = "https://127.0.0.1:7070"\nca = "pki/ca.pem"\ncert = "/abs/u.pem"\nkey = "k"\n'


def test_the_four_variables_win_over_profiles() -> None:
    env = {
        "GANTRY_ADDR": "10.0.0.1:7070",
        "GANTRY_CA": "/ca",
        "GANTRY_CERT": "/c",
        "GANTRY_KEY": "/k",
        "GANTRY_PROFILE": "/nonexistent.toml",
    }
    config = gantry.Config.discover(env)
    assert config == gantry.Config("10.0.0.1:7070", Path("/ca"), Path("/c"), Path("/k"))
    assert config.target == "10.0.0.1:7070"


def test_some_variables_without_the_others_name_what_is_missing() -> None:
    with pytest.raises(gantry.ConfigError, match="GANTRY_CERT, GANTRY_KEY is not"):
        gantry.Config.discover({"GANTRY_ADDR": "x", "GANTRY_CA": "/ca"})


def test_profile_paths_are_relative_to_its_directory(tmp_path: Path) -> None:
    (tmp_path / "client.toml").write_text(PROFILE)
    config = gantry.Config.discover({"GANTRY_PROFILE": str(tmp_path / "client.toml")})
    assert config.target == "127.0.0.1:7070"
    assert (config.ca, config.cert, config.key) == (
        tmp_path / "pki/ca.pem",
        Path("/abs/u.pem"),
        tmp_path / "k",
    )


def test_gantry_devs_profile_is_found_last(tmp_path: Path) -> None:
    dev = tmp_path / "state" / "gantry" / "dev"
    dev.mkdir(parents=True)
    (dev / "client.toml").write_text(PROFILE)
    config = gantry.Config.discover({"XDG_STATE_HOME": str(tmp_path / "state")})
    assert config.ca == dev / "pki/ca.pem"
    assert gantry.dev_state_dir({"HOME": "/home/a"}) == Path("/home/a/.local/state/gantry/dev")


def test_missing_and_broken_profiles_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(gantry.ConfigError, match="start `gantry dev` or set GANTRY_PROFILE"):
        gantry.Config.discover({"HOME": str(tmp_path)})
    stopped = tmp_path / "stopped.toml"
    stopped.write_text('ca = "a"\ncert = "b"\nkey = "c"\n')
    with pytest.raises(gantry.ConfigError, match="start `gantry dev` again"):
        gantry.Config.from_profile(stopped)
    broken = tmp_path / "broken.toml"
    broken.write_text("address = 3\n[")
    with pytest.raises(gantry.ConfigError, match=r"broken\.toml"):
        gantry.Config.from_profile(broken)
    ca = tmp_path / "ca.pem"
    ca.write_text("not used")
    with pytest.raises(gantry.ConfigError, match=r"cannot read the certificate .*no\.pem"):
        gantry.Client(gantry.Config("127.0.0.1:1", ca, tmp_path / "no.pem", tmp_path))


def test_a_client_uses_the_profile_gantry_profile_names(
    installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GANTRY_ADDR", "GANTRY_CA", "GANTRY_CERT", "GANTRY_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GANTRY_PROFILE", str(installation.profile("user", "bob")))
    with gantry.Client() as bob:
        job = bob.submit(["true"])
        assert job.owner == "bob"
