"""Value types shared by the containerizer modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ContainerizerError(Exception):
    """Base class of the containerizer's errors."""


class LaunchError(ContainerizerError):
    """A container could not be launched; nothing of it is left behind."""


@dataclass(frozen=True)
class LaunchSpec:
    """What to run and with which limits.

    ``cpus`` becomes ``cpu.shares = max(2, int(cpus * 1024))`` on cgroup v1 (the
    equivalent ``cpu.weight`` on v2) and, when CFS is enabled, a quota of
    ``cpus`` periods.  ``mem_mb`` is a hard memory limit in MiB with swap
    disabled.  ``user`` runs the task as that user when it differs from the
    agent's own user.
    """

    container_id: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    stdout_path: Path
    stderr_path: Path
    cpus: float | None = None
    mem_mb: float | None = None
    user: str | None = None


@dataclass(frozen=True)
class Termination:
    """How a container ended.

    ``exit_code`` is set when the main process exited normally, ``signal``
    when a signal ended it; ``oom_killed`` is true when the kernel OOM killer
    killed any process of the container.
    """

    exit_code: int | None
    signal: int | None
    oom_killed: bool
    message: str
