"""gpu/nvidia: ``LaunchSpec.gpus`` become ``CUDA_VISIBLE_DEVICES``, ``NVIDIA_VISIBLE_DEVICES`` (and
``CUDA_DEVICE_ORDER=PCI_BUS_ID``); tasks without GPUs get ``CUDA_VISIBLE_DEVICES=""``.  Where the devices
cgroup confines the task (``confined``: cgroups/devices is on), CUDA numbers the GPUs it can open from 0, so
they are named by UUID.  The device denial itself is cgroups/devices'.

The containerizer composes this isolator whether or not ``gpu/nvidia`` is enabled: a spec that asks for
GPUs is always checked and told its GPUs; ``enabled`` adds the empty CUDA_VISIBLE_DEVICES for the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._names import GPU_NVIDIA
from .._types import LaunchError, LaunchSpec
from ._interface import Isolator, LaunchInfo

if TYPE_CHECKING:
    from mesos_agent.gpus import Gpu


class NvidiaGpu(Isolator):
    name = GPU_NVIDIA

    def __init__(self, gpus: Mapping[int, Gpu], *, enabled: bool, confined: bool) -> None:
        self.gpus = dict(gpus)  # index -> the host's GPU (empty: unknown, any index is taken as it is)
        self.enabled = enabled
        self.confined = confined

    def environment(self, spec: LaunchSpec) -> dict[str, str]:
        """The task's environment (spec.env itself where there is nothing to add); LaunchError for bad GPUs."""
        if not spec.gpus and not self.enabled:
            return spec.env
        if len(set(spec.gpus)) != len(spec.gpus) or any(index < 0 for index in spec.gpus):
            raise LaunchError(f"container {spec.container_id!r}: bad GPU indices {spec.gpus}")
        if self.gpus and (unknown := [index for index in spec.gpus if index not in self.gpus]):
            raise LaunchError(f"container {spec.container_id!r}: no GPU with index {unknown} on this host")
        env = dict(spec.env)
        indices = ",".join(str(index) for index in spec.gpus)
        if self.confined and spec.gpus:
            known = [self.gpus.get(index) for index in spec.gpus]
            if all(gpu is not None for gpu in known):
                env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu.uuid for gpu in known if gpu is not None)
            else:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str(number) for number in range(len(spec.gpus)))
        else:
            env["CUDA_VISIBLE_DEVICES"] = indices
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["NVIDIA_VISIBLE_DEVICES"] = indices or "void"
        return env

    def prepare(self, spec: LaunchSpec, launch: LaunchInfo) -> None:
        launch.env = self.environment(spec)
