#!/usr/bin/env bash
# The host-dependent checks in one go, for a host unlike the CI machine (pure cgroup v2, GPUs):
# what the agent finds there (cgroup version and controllers, GPUs, the isolators it chooses), then the
# isolation, recovery and GPU tests against it, then the launch benchmark. Run from the repository root as
# root, with a python3 that imports the project's dependencies:
#     tests/host_check.sh [OUT_DIR]          # writes facts.txt, pytest.txt and bench.txt there
set -u
out=${1:-/tmp/aiomesos-host-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{
  echo "== host"; uname -r; nproc; python3 --version
  echo "== cgroups"; stat -fc %T /sys/fs/cgroup
  echo "controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
  echo "subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null)"
  echo "self: $(cat /proc/self/cgroup)"
  echo "== gpus"
  nvidia-smi --query-gpu=index,uuid,name,memory.total,pci.bus_id --format=csv,noheader,nounits
  ls -l /dev/nvidia* 2>&1 | head
  cat /proc/driver/nvidia/gpus/*/information 2>&1 | head -12
  echo "== what the agent chooses"
  python3 - <<'PY'
import asyncio
from mesos_agent.containerizer import Containerizer
from mesos_agent.containerizer import _bpf_devices
from mesos_agent.gpus import detect_gpus
gpus = detect_gpus()
print("detected:", gpus)
print("ebpf device programs:", _bpf_devices.supported())
c = Containerizer("aiomesos-host-check/probe", gpus=gpus)
print("cgroups version:", c.cgroups_version, "isolators:", c.isolators, "warning:", c.warning)
asyncio.run(c.shutdown())
PY
} 2>&1 | tee "$out/facts.txt"
timeout "${PYTEST_TIMEOUT:-240}" python3 -m pytest -q -p no:cacheprovider -rs \
  tests/unit/test_gpus.py tests/integration tests/e2e/test_gpus_e2e.py tests/e2e/test_tasks.py \
  tests/e2e/test_agent_recovery.py tests/e2e/test_health_checks.py tests/e2e/test_agent_kills.py 2>&1 | tee "$out/pytest.txt"
timeout 90 python3 -m bench.agent_launch --tasks 1000 2>&1 | tail -3 | tee "$out/bench.txt"
find /sys/fs/cgroup -maxdepth 2 -name 'aiomesos*' | tee -a "$out/bench.txt"
