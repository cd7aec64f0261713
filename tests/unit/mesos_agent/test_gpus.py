"""GPU detection from recorded nvidia-smi output, device minors, and the GPU index allocator."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mesos_agent.gpus import (
    NVIDIA_SMI_ARGS,
    Gpu,
    GpuAllocator,
    detect_gpus,
    device_minor,
    parse_nvidia_smi,
    with_minors,
)

DATA = Path(__file__).parent / "data"
UUID0 = "GPU-5c3bd0b9-7d8e-4f27-a2b3-8f6b1e0c9d41"
UUID1 = "GPU-a07e3c52-91f4-4d6a-b8e0-2c7d5f3e1a96"


def recorded(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------- recorded on an H200 host (data/README.md)
H200_UUID = "GPU-38964b47-1ed4-9660-1ddd-517cca22ca2a"
H200_BUS_ID = "00000000:00:06.0"


def recorded_h200_driver(tmp_path: Path) -> Path:
    """A /proc/driver/nvidia/gpus holding the H200's recorded information file."""
    proc = tmp_path / "proc-driver-nvidia-gpus"
    (proc / "0000:00:06.0").mkdir(parents=True)
    (proc / "0000:00:06.0" / "information").write_text(recorded("nvidia-proc-information-H200-recorded.txt"))
    return proc


def test_recorded_h200_nvidia_smi_output() -> None:
    assert parse_nvidia_smi(recorded("nvidia-smi-1xH200-recorded.csv")) == [
        Gpu(index=0, uuid=H200_UUID, name="NVIDIA H200", memory_mb=143771, pci_bus_id=H200_BUS_ID)
    ]


def test_detect_gpus_on_the_recorded_h200_host(tmp_path: Path) -> None:
    """Index, memory and bus id from nvidia-smi; the device minor from the driver's information file alone
    (no /dev here: the fallback cannot have supplied it)."""
    args = tmp_path / "args"
    tool = _fake_tool(tmp_path, f'echo "$@" > {args}; cat {DATA / "nvidia-smi-1xH200-recorded.csv"}')
    gpus = detect_gpus(tool, proc_dir=recorded_h200_driver(tmp_path), dev_dir=tmp_path / "no-dev")
    assert gpus == [Gpu(0, H200_UUID, "NVIDIA H200", 143771, minor=0, pci_bus_id=H200_BUS_ID)]
    assert gpus[0].device == "/dev/nvidia0"
    assert args.read_text().split() == NVIDIA_SMI_ARGS


def test_recorded_h200_information_file_names_the_gpu() -> None:
    lines = recorded("nvidia-proc-information-H200-recorded.txt").splitlines()
    info = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    assert info["GPU UUID"] == H200_UUID and info["Bus Location"] == "0000:00:06.0"
    assert info["Device Minor"] == "0" and info["Model"] == "NVIDIA H200"


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_device_minor_from_the_recorded_h200_dev_nodes(tmp_path: Path) -> None:
    """The recorded /dev: nvidia0 (195,0) is the GPU; nvidiactl (195,255) and nvidia-uvm (238,x) are not GPUs."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for line in recorded("dev-nvidia-H200-recorded.txt").splitlines():
        numbers, path = line.split()[-2:]
        major, minor = map(int, numbers.split(","))
        os.mknod(dev / Path(path).name, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    (gpu,) = parse_nvidia_smi(recorded("nvidia-smi-1xH200-recorded.csv"))
    assert device_minor(gpu, tmp_path / "no-proc", dev) == 0
    assert sorted(p.name for p in dev.iterdir()) == ["nvidia-uvm", "nvidia-uvm-tools", "nvidia0", "nvidiactl"]
    # Only /dev/nvidia<index> is looked at: a GPU index 255 would not pick nvidiactl.
    assert device_minor(Gpu(255, H200_UUID, "x", 1), tmp_path / "no-proc", dev) is None


# ---------------------------------------------------------------- hand-written (data/README.md)
def test_one_h100_in_the_documented_format() -> None:
    # nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader (units included)
    assert parse_nvidia_smi(recorded("nvidia-smi-1xH100.csv")) == [Gpu(0, UUID0, "NVIDIA H100 80GB HBM3", 81559)]


def test_two_h100_with_bus_ids() -> None:
    gpus = parse_nvidia_smi(recorded("nvidia-smi-2xH100.csv"))
    assert [(g.index, g.uuid, g.memory_mb, g.pci_bus_id) for g in gpus] == [
        (0, UUID0, 81559, "00000000:18:00.0"),
        (1, UUID1, 81559, "00000000:2A:00.0"),
    ]
    assert all(g.name == "NVIDIA H100 80GB HBM3" and g.minor is None for g in gpus)


def test_malformed_lines_are_skipped() -> None:
    gpus = parse_nvidia_smi(recorded("nvidia-smi-malformed.csv"))
    # BOM and CRLF tolerated; short lines, bad uuid / index / memory, a duplicated index and
    # "No devices were found" skipped; "[N/A]" memory kept as 0; a name with a comma kept whole.
    assert [(g.index, g.name, g.memory_mb) for g in gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 81559),
        (3, "NVIDIA H100 NVL", 0),
        (5, "Tesla K80, rev. B", 11441),
    ]
    assert gpus[0].uuid == UUID0
    assert gpus[1].pci_bus_id == "00000000:9A:00.0"


@pytest.mark.parametrize("text", ["", "\n\n", "No devices were found\n", "garbage"])
def test_nothing_to_parse(text: str) -> None:
    assert parse_nvidia_smi(text) == []


@pytest.mark.parametrize("memory, mb", [("81559 MiB", 81559), ("80 GiB", 81920), ("81559", 81559), ("1.5 GB", 1536)])
def test_memory_units(memory: str, mb: int) -> None:
    assert parse_nvidia_smi(f"0, {UUID0}, X, {memory}\n")[0].memory_mb == mb


def test_device_minor_from_the_driver_information_file(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "0000:2a:00.0").mkdir(parents=True)
    (proc / "0000:2a:00.0" / "information").write_text(recorded("nvidia-proc-information-2a.txt"))
    gpu = parse_nvidia_smi(recorded("nvidia-smi-2xH100.csv"))[1]
    # nvidia-smi's 8-digit domain and upper case, the driver's 4-digit domain and lower case.
    assert device_minor(gpu, proc, tmp_path / "no-dev") == 3
    assert with_minors([gpu], proc, tmp_path / "no-dev")[0].minor == 3
    assert device_minor(parse_nvidia_smi(recorded("nvidia-smi-2xH100.csv"))[0], proc, tmp_path / "no-dev") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_device_minor_from_dev_nodes(tmp_path: Path) -> None:
    os.mknod(tmp_path / "nvidia0", 0o600 | stat.S_IFCHR, os.makedev(195, 7))
    os.mknod(tmp_path / "nvidia1", 0o600 | stat.S_IFCHR, os.makedev(10, 1))  # not an nvidia major
    g0, g1 = parse_nvidia_smi(recorded("nvidia-smi-2xH100.csv"))
    assert device_minor(g0, tmp_path / "no-proc", tmp_path) == 7
    assert device_minor(g1, tmp_path / "no-proc", tmp_path) is None
    assert Gpu(0, UUID0, "x", 1, minor=7).device == "/dev/nvidia7"


def _fake_tool(tmp_path: Path, body: str) -> str:
    tool = tmp_path / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    return str(tool)


def test_detect_gpus_runs_the_tool(tmp_path: Path) -> None:
    args = tmp_path / "args"
    tool = _fake_tool(tmp_path, f'echo "$@" > {args}; cat {DATA / "nvidia-smi-2xH100.csv"}')
    gpus = detect_gpus(tool, proc_dir=tmp_path / "no-proc", dev_dir=tmp_path / "no-dev")
    assert [g.uuid for g in gpus] == [UUID0, UUID1]
    assert args.read_text().split() == NVIDIA_SMI_ARGS


def test_detect_gpus_without_the_tool_or_when_it_fails(tmp_path: Path) -> None:
    assert detect_gpus(str(tmp_path / "missing-nvidia-smi")) == []
    assert detect_gpus("no-such-tool-on-path-xyz") == []
    failing = _fake_tool(tmp_path, 'echo "No devices were found"; exit 6')
    assert detect_gpus(failing) == []
    hanging = _fake_tool(tmp_path, "exec sleep 10")
    assert detect_gpus(hanging, timeout=0.2) == []


def test_gpu_allocator() -> None:
    alloc = GpuAllocator(range(4))
    assert (alloc.total, alloc.available) == (4, 4)
    assert alloc.allocate(0) == ()
    assert alloc.allocate(2) == (0, 1)
    assert alloc.allocate(3) is None and alloc.available == 2  # nothing taken
    assert alloc.allocate(1) == (2,)
    alloc.release((0,))
    assert alloc.allocate(2) == (0, 3)
    with pytest.raises(ValueError, match="not allocated"):
        alloc.release((5,))
    with pytest.raises(ValueError, match="not allocated"):
        alloc.release((1, 1, 7))
    alloc.release((1, 2))
    alloc.take((2,))  # a recovered task's GPU
    with pytest.raises(ValueError, match="not free"):
        alloc.take((2,))
    assert alloc.allocate(2) is None and alloc.allocate(1) == (1,)
    with pytest.raises(ValueError):
        alloc.allocate(-1)
