"""NVIDIA GPU detection (nvidia-smi) and a tiny allocator of GPU indices.

``detect_gpus()`` runs::

    nvidia-smi --query-gpu=index,uuid,name,memory.total,pci.bus_id --format=csv,noheader,nounits

and returns one ``Gpu`` per well-formed line; a missing tool, a failing or
hanging one, or a host without GPUs gives ``[]``.  Malformed lines are
skipped (and logged), never fatal: an agent must start whatever the driver
prints.

The device minor (``/dev/nvidia<minor>``, what the devices cgroup needs) is
not the nvidia-smi index in general: it is read from the driver's
``/proc/driver/nvidia/gpus/<pci bus id>/information`` ("Device Minor"),
else taken from ``/dev/nvidia<index>`` when that node exists (the usual
case, where both orders agree), else left None.

Indices are nvidia-smi's, i.e. PCI bus order; CUDA's own default order
differs (fastest first), which is why the containerizer sets
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` together with ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

QUERY_FIELDS = "index,uuid,name,memory.total,pci.bus_id"
NVIDIA_SMI_ARGS = [f"--query-gpu={QUERY_FIELDS}", "--format=csv,noheader,nounits"]
NVIDIA_MAJOR = 195
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(MiB|MB|GiB|GB|KiB|KB)?\s*$", re.IGNORECASE)
_UNITS_MB = {"": 1.0, "mib": 1.0, "mb": 1.0, "gib": 1024.0, "gb": 1024.0, "kib": 1 / 1024, "kb": 1 / 1024}
_BUS_ID = re.compile(r"^([0-9a-fA-F]{4,8}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_mb: int
    minor: int | None = None
    pci_bus_id: str | None = None

    @property
    def device(self) -> str | None:
        """The device node, e.g. /dev/nvidia0 (None when the minor is unknown)."""
        return None if self.minor is None else f"/dev/nvidia{self.minor}"


def _memory_mb(text: str) -> int | None:
    if text.strip().lower() in ("[n/a]", "n/a", "[not supported]", "[unknown error]"):
        return 0
    m = _MEMORY.match(text)
    if m is None:
        return None
    return int(float(m.group(1)) * _UNITS_MB[(m.group(2) or "").lower()])


def _split_csv(line: str) -> list[str]:
    """nvidia-smi's CSV: comma separated, no quoting, but a name may hold commas (take them from the middle)."""
    return [p.strip() for p in line.split(",")]


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """GPUs from the output of NVIDIA_SMI_ARGS (4 fields without pci.bus_id are accepted too).

    Lines that do not parse are skipped; a duplicated index keeps its first line.
    """
    gpus: list[Gpu] = []
    seen: set[int] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip().lstrip("\ufeff")
        if not line:
            continue
        parts = _split_csv(line)
        if len(parts) < 4:
            log.warning("gpus.unparsed_line", line=lineno, text=raw[:200], why="fewer than 4 fields")
            continue
        # A name with commas in it: index, uuid first; memory[, bus id] last.
        bus_id: str | None = None
        if len(parts) >= 5 and _BUS_ID.match(parts[-1]):
            bus_id = parts[-1]
            parts = parts[:-1]
        index_s, uuid, *name_parts, memory_s = parts
        name = ", ".join(name_parts)
        try:
            index = int(index_s)
        except ValueError:
            log.warning("gpus.unparsed_line", line=lineno, text=raw[:200], why="bad index")
            continue
        memory = _memory_mb(memory_s)
        if index < 0 or not uuid.startswith(("GPU-", "MIG-")) or memory is None or not name:
            log.warning("gpus.unparsed_line", line=lineno, text=raw[:200], why="bad uuid, name or memory")
            continue
        if index in seen:
            log.warning("gpus.duplicate_index", line=lineno, index=index)
            continue
        seen.add(index)
        gpus.append(Gpu(index=index, uuid=uuid, name=name, memory_mb=memory, pci_bus_id=bus_id))
    return sorted(gpus, key=lambda g: g.index)


def _proc_bus_id(bus_id: str) -> str:
    """nvidia-smi prints an 8-digit PCI domain ("00000000:18:00.0"); /proc and /sys use 4 ("0000:18:00.0")."""
    domain, rest = bus_id.split(":", 1)
    return f"{int(domain, 16):04x}:{rest.lower()}"


def device_minor(
    gpu: Gpu, proc_dir: Path = Path("/proc/driver/nvidia/gpus"), dev_dir: Path = Path("/dev")
) -> int | None:
    """The GPU's device minor: from the driver's information file, else /dev/nvidia<index>, else None."""
    if gpu.pci_bus_id and _BUS_ID.match(gpu.pci_bus_id):
        try:
            info = (proc_dir / _proc_bus_id(gpu.pci_bus_id) / "information").read_text()
        except OSError:
            info = ""
        for line in info.splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "device minor":
                try:
                    return int(value.strip())
                except ValueError:
                    break
    try:
        st = os.stat(dev_dir / f"nvidia{gpu.index}")
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == NVIDIA_MAJOR:
        return os.minor(st.st_rdev)
    return None


def with_minors(
    gpus: Iterable[Gpu], proc_dir: Path = Path("/proc/driver/nvidia/gpus"), dev_dir: Path = Path("/dev")
) -> list[Gpu]:
    out = []
    for g in gpus:
        minor = g.minor if g.minor is not None else device_minor(g, proc_dir, dev_dir)
        out.append(Gpu(g.index, g.uuid, g.name, g.memory_mb, minor, g.pci_bus_id))
    return out


def detect_gpus(
    nvidia_smi: str = "nvidia-smi",
    *,
    timeout: float = 10.0,
    proc_dir: Path = Path("/proc/driver/nvidia/gpus"),
    dev_dir: Path = Path("/dev"),
) -> list[Gpu]:
    """The host's NVIDIA GPUs; [] without nvidia-smi, without GPUs, or when nvidia-smi fails (logged)."""
    exe = shutil.which(nvidia_smi)
    if exe is None:
        return []
    try:
        done = subprocess.run(
            [exe, *NVIDIA_SMI_ARGS],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("gpus.nvidia_smi_failed", error=str(e))
        return []
    out = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        # No driver loaded, no devices ("No devices were found" exits 6), or a broken install.
        log.warning(
            "gpus.nvidia_smi_failed",
            status=done.returncode,
            output=(out + done.stderr.decode(errors="replace")).strip()[:300],
        )
        return []
    return with_minors(parse_nvidia_smi(out), proc_dir, dev_dir)


class GpuAllocator:
    """Which of the host's GPU indices are free; allocation takes the lowest free indices.

    Pure bookkeeping (no I/O); not thread-safe (the agent uses it from its event loop).
    """

    def __init__(self, indices: Iterable[int]) -> None:
        self._all = frozenset(indices)
        self._free = set(self._all)

    @property
    def total(self) -> int:
        return len(self._all)

    @property
    def available(self) -> int:
        return len(self._free)

    def allocate(self, n: int) -> tuple[int, ...] | None:
        """n free GPU indices (sorted), now taken; None when fewer than n are free (nothing taken)."""
        if n < 0:
            raise ValueError("cannot allocate a negative number of GPUs")
        if n > len(self._free):
            return None
        taken = tuple(sorted(self._free)[:n])
        self._free.difference_update(taken)
        return taken

    def take(self, indices: Iterable[int]) -> None:
        """Mark specific indices used (re-adopting the GPUs of recovered tasks); ValueError if not free."""
        wanted = set(indices)
        if not wanted <= self._free:
            raise ValueError(f"GPU(s) {sorted(wanted - self._free)} are not free")
        self._free.difference_update(wanted)

    def release(self, indices: Iterable[int]) -> None:
        """Free indices again; releasing a free or unknown index raises ValueError (nothing released)."""
        given = set(indices)
        bad = given - (self._all - self._free)
        if bad:
            raise ValueError(f"GPU(s) {sorted(bad)} are not allocated")
        self._free.update(given)
