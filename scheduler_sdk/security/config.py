"""The client config file (`aiomesos.toml`): where the master is and how to prove who we are to it.

```toml
master = "127.0.0.1:5050"     # HOST:PORT, a comma-separated list, or etcd://HOST:PORT[,HOST:PORT]/PREFIX
ca = "certs/ca.crt"           # the cluster CA; relative paths are relative to this file
token = "..."                 # a bearer token, or:
cert = "certs/ops.crt"        # a client certificate
key = "certs/ops.key"         # and its key
jobs = "127.0.0.1:5060"       # the jobs service (`aiomesos job ...`), HOST:PORT
```

The CLI and the SDK read it from `--config`, else `$AIOMESOS_CONFIG`, else `~/.config/aiomesos/config.toml`."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from scheduler_sdk.masters import parse_master
from scheduler_sdk.security._files import write_private
from scheduler_sdk.security.certs import SecurityError

CONFIG_ENV = "AIOMESOS_CONFIG"
KEYS = ("master", "ca", "token", "cert", "key", "jobs")


def default_config_path(env: Mapping[str, str] = os.environ) -> Path:
    home = Path(env.get("HOME") or Path.home())
    return Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "aiomesos" / "config.toml"


def find_client_config(explicit: str | None = None, env: Mapping[str, str] = os.environ) -> Path | None:
    """The config file to use: `explicit` (must exist), else $AIOMESOS_CONFIG (must exist), else the default
    path when it exists, else None (a plain, insecure client: only a loopback master without security)."""
    for chosen, what in ((explicit, "--config"), (env.get(CONFIG_ENV), CONFIG_ENV)):
        if chosen:
            path = Path(chosen).expanduser()
            if not path.is_file():
                raise SecurityError(f"{what}: no config file at {path}")
            return path
    default = default_config_path(env)
    return default if default.is_file() else None


@dataclass(frozen=True)
class ClientConfig:
    master: str = ""
    ca: Path | None = None
    token: str | None = None
    cert: Path | None = None
    key: Path | None = None
    jobs: str = ""

    @classmethod
    def load(cls, path: Path) -> ClientConfig:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as e:
            raise SecurityError(f"cannot read {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise SecurityError(f"{path}: not TOML: {e}") from None
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise SecurityError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
        for name, value in data.items():
            if not isinstance(value, str) or not value:
                raise SecurityError(f"{path}: {name} must be a non-empty string")
        if ("cert" in data) != ("key" in data):
            raise SecurityError(f"{path}: cert and key go together")
        if "master" in data:
            try:
                parse_master(data["master"])
            except ValueError as e:
                raise SecurityError(f"{path}: {e}") from None

        def rel(name: str) -> Path | None:
            return (path.parent / data[name]).resolve() if name in data else None

        return cls(
            master=data.get("master", ""),
            ca=rel("ca"),
            token=data.get("token"),
            cert=rel("cert"),
            key=rel("key"),
            jobs=data.get("jobs", ""),
        )

    def render(self) -> str:
        lines = ["# aiomesos client config (see docs): the master, the cluster CA and this client's credential"]
        for name in KEYS:
            value = getattr(self, name)
            if value:
                lines.append(f'{name} = "{value}"')
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        """Owner-only: it may hold a token."""
        write_private(path, self.render().encode())

    @property
    def secure(self) -> bool:
        return self.ca is not None


def load_client_config(explicit: str | None = None, env: Mapping[str, str] = os.environ) -> ClientConfig | None:
    """The config `find_client_config` picks, loaded; None when there is none (a plaintext client)."""
    path = find_client_config(explicit, env)
    return ClientConfig.load(path) if path is not None else None
