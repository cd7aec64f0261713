"""GPUs for real (runs where nvidia-smi finds an NVIDIA GPU; skipped elsewhere): the agent offers them as
`gpus` to GPU_RESOURCES frameworks only, and a task sees just the GPUs it was given."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.gpus import detect_gpus
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.resources import Resources
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import Recorder, framework, task

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.cgroups,
    pytest.mark.skipif(shutil.which("nvidia-smi") is None or not detect_gpus(), reason="no NVIDIA GPU on this host"),
]
GPU = rpb.FrameworkInfo.Capability.GPU_RESOURCES
PROBE = (
    'echo "visible=[$CUDA_VISIBLE_DEVICES]"; '
    "python3 -c 'import torch; print(\"torch_count=%d\" % torch.cuda.device_count())' 2>/dev/null || true; "
    # Without the environment's help: what the device control alone lets the task open.
    "env -u CUDA_VISIBLE_DEVICES -u NVIDIA_VISIBLE_DEVICES python3 -c "
    "'import torch; print(\"raw_count=%d\" % torch.cuda.device_count())' 2>/dev/null || true"
)


def _device_control() -> bool:
    """Whether the agent can deny GPU device nodes here (v1 devices controller, or eBPF on cgroup v2)."""
    from mesos_agent.containerizer import _bpf_devices

    return Path("/sys/fs/cgroup/devices").is_dir() or _bpf_devices.supported()


@pytest.mark.timeout(300)
async def test_gpus_are_offered_to_gpu_frameworks_only_and_isolated_per_task(tmp_path: Path) -> None:
    n = len(detect_gpus())
    c = LocalCluster(
        tmp_path,
        agents=1,
        agent_resources="cpus:4;mem:8192;disk:1000",
        gpus=True,
        master_flags=list(FAST_MASTER),
        agent_flags=list(FAST_AGENT),
    )
    try:
        await c.start()
        plain = Recorder()
        async with framework(c.master_address, plain, name="cpu-only"):
            with contextlib.suppress(AssertionError, TimeoutError):
                offer = await plain.next_offer(timeout=2.0)
                pytest.fail(f"a framework without GPU_RESOURCES was offered the GPU agent: {offer.resources}")
        rec = Recorder()
        async with framework(c.master_address, rec, name="ml", capabilities=[GPU]) as driver:
            offer = await rec.next_offer()
            assert Resources.from_proto(offer.resources).scalar("gpus") == n
            # Enough memory to import torch (under a tight memory limit it thrashes the page cache).
            with_gpu = task("with-gpu", PROBE, offer.agent_id, cpus=1, mem=3072)
            with_gpu.resources.extend(Resources.of(gpus=1).to_proto())
            without = task("without-gpu", PROBE, offer.agent_id, cpus=1, mem=3072)
            driver.accept([offer.id], [with_gpu, without])
            for t in ("with-gpu", "without-gpu"):
                s = await rec.wait_state(t, {tpb.TASK_FINISHED, tpb.TASK_FAILED, tpb.TASK_ERROR}, timeout=120)
                assert s.state == tpb.TASK_FINISHED, s.message
        out = {
            p.parts[-4]: p.read_text()
            for p in (c.agent_daemons[0].work_dir / "agents").glob("*/frameworks/*/executors/*/runs/latest/stdout")
        }
        print("task outputs:", out)
        assert "visible=[]" in out["without-gpu"]
        assert "visible=[]" not in out["with-gpu"]
        if "torch_count=" in out["with-gpu"]:
            assert "torch_count=1" in out["with-gpu"]
            assert "torch_count=0" in out["without-gpu"]
            if _device_control():
                assert "raw_count=1" in out["with-gpu"]
                assert "raw_count=0" in out["without-gpu"], "the device control let a GPU-less task open a GPU"
    finally:
        assert await c.stop() == []
