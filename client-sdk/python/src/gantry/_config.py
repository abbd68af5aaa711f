"""Where the SDK finds gantryd and the caller's certificate, as the ``gantry`` CLI does."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError

#: The variables that configure a client without a profile (all four or none).
ENV_VARS = ("GANTRY_ADDR", "GANTRY_CA", "GANTRY_CERT", "GANTRY_KEY")
#: The variable naming a profile file.
PROFILE_ENV = "GANTRY_PROFILE"


@dataclass(frozen=True)
class Config:
    """gantryd's address and the TLS files to reach it with.

    ``address`` is ``host:port`` (an ``https://`` prefix is accepted); ``ca``
    is the installation's CA certificate, ``cert`` and ``key`` the caller's own.
    """

    address: str
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_profile(cls, path: str | os.PathLike[str]) -> Config:
        """Load a profile TOML file (keys ``address``, ``ca``, ``cert``, ``key``).

        Relative paths are taken from the profile's directory.
        """
        path = Path(path)
        try:
            profile = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"profile {path}: {e}") from e
        unknown = set(profile) - {"address", "ca", "cert", "key"}
        if unknown:
            raise ConfigError(f"profile {path}: unknown keys {', '.join(sorted(unknown))}")
        address = profile.get("address")
        if not isinstance(address, str) or not address.strip():
            raise ConfigError(
                f"profile {path}: no `address`: the `gantry dev` that wrote it has stopped; "
                "start `gantry dev` again or set GANTRY_PROFILE to another profile"
            )
        files = {}
        for key in ("ca", "cert", "key"):
            value = profile.get(key)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"profile {path}: `{key}` must name a file")
            files[key] = path.parent / value
        return cls(address=address, ca=files["ca"], cert=files["cert"], key=files["key"])

    @classmethod
    def discover(cls, env: Mapping[str, str] | None = None) -> Config:
        """Find the configuration as the ``gantry`` CLI does.

        In order: ``GANTRY_ADDR``, ``GANTRY_CA``, ``GANTRY_CERT`` and
        ``GANTRY_KEY`` (all four); else the profile named by ``GANTRY_PROFILE``;
        else the profile ``gantry dev`` writes. ``env`` defaults to ``os.environ``.
        """
        env = os.environ if env is None else env
        values = [env.get(name) or None for name in ENV_VARS]
        if all(values):
            address, ca, cert, key = (v or "" for v in values)
            return cls(address=address, ca=Path(ca), cert=Path(cert), key=Path(key))
        if any(values):
            set_ = next(n for n, v in zip(ENV_VARS, values, strict=True) if v)
            missing = [n for n, v in zip(ENV_VARS, values, strict=True) if not v]
            raise ConfigError(
                f"{set_} is set but {', '.join(missing)} is not: "
                f"set all of {', '.join(ENV_VARS)} or none"
            )
        profile = env.get(PROFILE_ENV)
        if profile:
            return cls.from_profile(profile)
        dev = dev_state_dir(env) / "client.toml"
        if dev.exists():
            return cls.from_profile(dev)
        raise ConfigError(
            "no Gantry profile found: start `gantry dev` or set GANTRY_PROFILE "
            "(or GANTRY_ADDR, GANTRY_CA, GANTRY_CERT and GANTRY_KEY)"
        )

    @property
    def target(self) -> str:
        """The address as gRPC dials it (``host:port``)."""
        address = self.address.strip()
        return address.split("://", 1)[1] if "://" in address else address

    def credentials(self) -> tuple[bytes, bytes, bytes]:
        """The CA, certificate and key as bytes, with an error naming a missing file."""
        loaded = []
        for what, path in (
            ("CA certificate", self.ca),
            ("certificate", self.cert),
            ("private key", self.key),
        ):
            try:
                loaded.append(path.read_bytes())
            except OSError as e:
                raise ConfigError(f"cannot read the {what} {path}: {e.strerror}") from e
        return loaded[0], loaded[1], loaded[2]


def dev_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``gantry dev``'s state directory.

    ``$XDG_STATE_HOME/gantry/dev``, or ``~/.local/state/gantry/dev`` without it.
    """
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME")
    if base:
        return Path(base) / "gantry" / "dev"
    return Path(env.get("HOME") or ".") / ".local" / "state" / "gantry" / "dev"
