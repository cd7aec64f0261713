"""cgroups/devices: a task may open its own GPUs' device nodes only (every other ``/dev/nvidia<minor>`` is
denied; nvidiactl, nvidia-uvm stay open): ``devices.deny`` lines on cgroup v1, an eBPF device program
attached to the container's cgroup on v2 (see ``_bpf_devices``)."""

from __future__ import annotations

from collections.abc import Mapping

from mesos_agent.gpus import NVIDIA_MAJOR

from .. import _bpf_devices
from .._names import DEVICES
from .._types import LaunchError, LaunchSpec
from ._interface import CgroupIsolator, CgroupWrite, LaunchInfo


class CgroupsDevices(CgroupIsolator):
    name = DEVICES

    def __init__(self, version: int, slot: int, *, gpu_minors: Mapping[int, int]) -> None:
        super().__init__(version, slot)
        # GPU index -> device minor, for every GPU of the host whose minor is known.
        self.gpu_minors = dict(gpu_minors)

    def denied_devices(self, spec: LaunchSpec) -> list[tuple[int, int]]:
        """The (major, minor) character devices the container must not open: every GPU not its own."""
        own = set(spec.gpus)
        return [(NVIDIA_MAJOR, minor) for index, minor in sorted(self.gpu_minors.items()) if index not in own]

    def limits(self, spec: LaunchSpec) -> list[CgroupWrite]:
        if self.version != 1:
            return []  # v2 has no devices files: see prepare
        return [CgroupWrite("devices.deny", f"c {major}:{minor} rwm") for major, minor in self.denied_devices(spec)]

    def prepare(self, spec: LaunchSpec, launch: LaunchInfo) -> None:
        if self.version == 1:
            super().prepare(spec, launch)
            return
        denied = self.denied_devices(spec)
        if not denied:
            return
        directory = self.directory(launch.cgroup_paths)
        try:
            _bpf_devices.attach_deny(directory, denied)
        except OSError as e:
            raise LaunchError(f"cannot attach the device filter to {directory}: {e.strerror}") from e
