"""The isolator interface: one object per isolation concern, composed by the Containerizer (as Mesos' isolators).

The Containerizer composes the isolators enabled by ``--isolation`` and calls, for each container:

1. ``prepare(spec, launch)`` before the task's process starts: check the spec (raise LaunchError), write
   the container's cgroup limits (``launch.cgroup_paths`` exist, empty), add environment variables, the
   wrapper's rlimits or a namespace runner to ``launch``.  When it raises, the containerizer removes the
   cgroups and whatever the launch made; an isolator leaves nothing else behind.
2. ``isolate(container)`` once the process exists (Mesos' isolate: the pid is known).  Default: nothing.
3. ``watch(containers)`` every ``watch_interval`` seconds (None: it watches nothing), with the running
   containers for which ``watches(container)`` holds; it returns the limitations reached (OOM, disk quota).
   The containerizer kills those containers and their Termination names the limitation.  One call per
   interval for all containers: a poll that scans /proc or walks sandboxes does it once.
4. ``ended(container, returncode)`` once the main process has exited and its leftovers are killed, before
   the cgroups go: a limitation the end reveals (the kernel OOM killer's victim), else None.
5. ``usage(container)`` whenever stats are asked: the figures this isolator measures, with Mesos
   ResourceStatistics names; {} when it measures nothing.  Cheap (cgroupfs reads), never raises (an OSError
   is the caller's to swallow: the figure is then missing).
6. ``cleanup(container)`` when the container is over (or no longer watched): forget its state.
   Idempotent, never raises.

Isolators know a container only through ``ContainerView`` (no import of the Container class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, NamedTuple, Protocol

import structlog

from .._cgroupfs import write_file
from .._types import LaunchError, LaunchSpec, Limitation

log = structlog.get_logger(__name__)


class ContainerView(Protocol):
    """What an isolator may know of a container."""

    container_id: str
    pid: int
    cgroup_paths: list[Path]

    @property
    def spec(self) -> LaunchSpec: ...

    @property
    def done(self) -> bool:
        """Whether the container is over (its Termination known)."""
        ...

    @property
    def sigkill_sent(self) -> bool:
        """Whether the containerizer itself SIGKILLed the container (a kill that is not the kernel's)."""
        ...


@dataclass
class LaunchInfo:
    """What the isolators add to one launch (Mesos' ContainerLaunchInfo), filled by their ``prepare``.

    ``cgroup_paths`` are the container's cgroup dirs (created before prepare, empty); ``env`` the task's
    environment; ``rlimits`` the wrapper's ``ulimit`` commands; ``unshare`` the unshare(1) that runs the
    task in new pid and mount namespaces.
    """

    cgroup_paths: list[Path]
    env: dict[str, str]
    rlimits: list[str] = field(default_factory=list)
    unshare: str | None = None


class Isolator:
    """One isolator (see the module docstring for the order of the calls and their contract).

    Subclasses override what they take part in; every method has a do-nothing default.
    """

    name: ClassVar[str]
    #: Seconds between two ``watch`` calls; None: this isolator watches nothing.
    watch_interval: float | None = None

    def prepare(self, spec: LaunchSpec, launch: LaunchInfo) -> None:
        """Before the process starts: check spec, set limits, contribute to launch (LaunchError when it cannot)."""

    def isolate(self, container: ContainerView) -> None:
        """Once the container's main process exists."""

    def watches(self, container: ContainerView) -> bool:
        """Whether ``watch`` should look at this running container."""
        return False

    async def watch(self, containers: Sequence[ContainerView]) -> list[tuple[ContainerView, Limitation]]:
        """The limitations reached by containers (those ``watches`` accepted, all running)."""
        return []

    async def ended(self, container: ContainerView, returncode: int | None) -> Limitation | None:
        """The main process has exited (returncode as ``TaskProcess.wait`` gives it): a limitation it reveals."""
        return None

    def usage(self, container: ContainerView) -> dict[str, float]:
        """What this isolator measures of the container (Mesos ResourceStatistics names)."""
        return {}

    def cleanup(self, container: ContainerView) -> None:
        """The container is over: drop what this isolator keeps of it (idempotent)."""


class CgroupWrite(NamedTuple):
    """One cgroup limit: the value for a file of the controller's dir; a failed optional write is only logged."""

    file: str
    value: str
    required: bool = True


class CgroupIsolator(Isolator):
    """An isolator that works in one cgroup controller's dir of the container (v1: its subsystem's hierarchy).

    ``version`` is the cgroup version (1 or 2); ``slot`` the index of the controller's dir in the
    container's ``cgroup_paths`` (v2: 0, the one unified dir).  ``limits(spec)`` is pure: the files and
    values ``prepare`` writes.
    """

    def __init__(self, version: int, slot: int) -> None:
        self.version = version
        self.slot = slot

    def directory(self, cgroup_paths: Sequence[Path]) -> Path:
        return cgroup_paths[self.slot]

    def limits(self, spec: LaunchSpec) -> list[CgroupWrite]:
        """The cgroup files to write for spec, and their values."""
        return []

    def prepare(self, spec: LaunchSpec, launch: LaunchInfo) -> None:
        writes = self.limits(spec)
        if writes:
            write_limits(self.directory(launch.cgroup_paths), writes)


def write_limits(directory: Path, writes: Sequence[CgroupWrite]) -> None:
    """Write the limits into directory: LaunchError for a failed required write, a logged warning otherwise."""
    prefix = str(directory)
    for write in writes:
        path = f"{prefix}/{write.file}"
        try:
            write_file(path, write.value)
        except OSError as e:
            if not write.required:
                log.warning("containerizer.optional_limit_failed", path=path, error=e.strerror)
                continue
            raise LaunchError(f"cannot write {write.value!r} to {path}: {e.strerror}") from e
