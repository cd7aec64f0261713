"""posix/rlimits: the launch wrapper's rlimits, set with the shell's own ``ulimit`` (soft and hard alike).

* RLIMIT_DATA from ``mem_mb`` where posix/mem stands in for the memory cgroup, not RLIMIT_AS:
  RLIMIT_DATA counts what a process can write to (heap, private writable mappings; Linux >= 4.7),
  RLIMIT_AS every reservation too, which JVMs, Go, CUDA and sanitizers make far beyond what they use and
  would fail at start.  It is per process: the tree as a whole is still held to mem_mb by posix/mem.
* RLIMIT_FSIZE from ``disk_mb`` with ``enforce_disk`` and disk/du, in every mode (no cgroup limits the size
  of a file): one 512-byte block past the disk, so that a file stopped by it leaves the sandbox over its disk
  and disk/du's next poll kills the task, whichever of its processes wrote it (a file larger than the whole
  quota is over it anyway; the sandbox total is still measured by disk/du).  A task whose main process is
  killed by SIGXFSZ (or a shell reporting that of its child, exit status 153) ends with ``limitation="disk"``.
* RLIMIT_CORE 0 in posix mode: no core dumps filling the sandbox.
* Not RLIMIT_NPROC: it counts every process of the user, not of the task.

Commands run in the container (``exec_in_container``) get the same rlimits.
"""

from __future__ import annotations

from .._names import POSIX_RLIMITS, MiB
from .._types import LaunchSpec
from .._wrapper import rlimit_steps
from ._interface import Isolator, LaunchInfo

#: How far past the disk RLIMIT_FSIZE lets one file grow: a block of ``ulimit -f``.
FSIZE_MARGIN = 512


class PosixRlimits(Isolator):
    """``data``: RLIMIT_DATA from mem_mb; ``fsize``: RLIMIT_FSIZE from disk_mb; ``no_core``: RLIMIT_CORE 0."""

    name = POSIX_RLIMITS

    def __init__(self, *, data: bool, fsize: bool, no_core: bool) -> None:
        self.data = data
        self.fsize = fsize
        self.no_core = no_core

    def fsize_limit(self, spec: LaunchSpec) -> int | None:
        """RLIMIT_FSIZE for spec in bytes, or None when files are not limited."""
        return int(spec.disk_mb * MiB) + FSIZE_MARGIN if self.fsize and spec.disk_mb is not None else None

    def steps(self, spec: LaunchSpec) -> list[str]:
        """The wrapper's ``ulimit`` commands for spec."""
        data_bytes = int(spec.mem_mb * MiB) if self.data and spec.mem_mb is not None else None
        return rlimit_steps(data_bytes, self.fsize_limit(spec), no_core=self.no_core)

    def prepare(self, spec: LaunchSpec, launch: LaunchInfo) -> None:
        launch.rlimits.extend(self.steps(spec))
