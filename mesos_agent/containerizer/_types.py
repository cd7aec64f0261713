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

    ``checkpoint`` makes the container recoverable by a later agent process
    (``Containerizer.recover``): the launch wrapper then stays as the task's
    parent, records the task's exit status in the containerizer's runtime
    dir and a launch record is written there.  ``disk_mb`` is the sandbox's
    disk quota (measured by ``disk/du``, enforced with ``enforce_disk``).
    ``gpus`` are the host GPU indices (nvidia-smi order) the task may use.
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
    checkpoint: bool = False
    disk_mb: float | None = None
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class Termination:
    """How a container ended.

    ``exit_code`` is set when the main process exited normally, ``signal``
    when a signal ended it (neither when the status is unknown: a recovered
    container whose launch wrapper vanished without recording it);
    ``oom_killed`` is true when the container was killed for exceeding its
    memory (by the kernel OOM killer, or by the posix poller).
    ``limitation`` names the limit the container was killed for exceeding,
    ``"memory"`` or ``"disk"``, else None.
    """

    exit_code: int | None
    signal: int | None
    oom_killed: bool
    message: str
    limitation: str | None = None


@dataclass(frozen=True)
class Limitation:
    """A limit a container reached (as Mesos' ContainerLimitation): it is killed and its Termination says why.

    ``resource`` is ``"memory"`` or ``"disk"`` (``Termination.limitation``), ``message`` the one line for
    the task's status.
    """

    resource: str
    message: str
