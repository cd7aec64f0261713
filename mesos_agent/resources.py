"""What the agent offers: detected with psutil by Mesos' rules, or given with `--resources`; and attributes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import psutil

from aiomesos.v1 import resources_pb2 as pb
from scheduler_sdk.resources import Resources, ResourcesError

GiB_MB = 1024
DEFAULT_PORTS = (31000, 32000)


def detect_resources(work_dir: Path) -> Resources:
    """cpus = cores; mem = total - 1 GiB when total ≥ 2 GiB, else half; disk = the work dir's filesystem - 5 GiB
    when ≥ 10 GiB, else half; ports 31000-32000 (all in MB like Mesos)."""
    cpus = float(psutil.cpu_count(logical=True) or 1)
    mem_mb = psutil.virtual_memory().total / (1 << 20)
    mem_mb = mem_mb - GiB_MB if mem_mb >= 2 * GiB_MB else mem_mb / 2
    disk_mb = shutil.disk_usage(work_dir).total / (1 << 20)
    disk_mb = disk_mb - 5 * GiB_MB if disk_mb >= 10 * GiB_MB else disk_mb / 2
    return Resources.of(cpus=cpus, mem=int(mem_mb), disk=int(disk_mb)) + Resources.ports(DEFAULT_PORTS)


def agent_resources(flag: str | None, work_dir: Path) -> Resources:
    """`--resources` names what it sets; what it leaves out (cpus, mem, disk, ports) is detected."""
    detected = detect_resources(work_dir)
    if not flag:
        return detected
    given = Resources.parse(flag)
    missing = detected.only(*(n for n in ("cpus", "mem", "disk", "ports") if n not in given.names()))
    return given + missing


_ATTR = re.compile(r"(?P<name>[A-Za-z_][\w.\-]*)\s*:\s*(?P<value>.+)")


def parse_attributes(text: str | None) -> list[pb.Attribute]:
    """`zone:a;rack:r1;generation:3;ids:[1-4];tags:{x,y}`: text, scalar, ranges or set attributes."""
    out: list[pb.Attribute] = []
    for raw in (text or "").split(";"):
        part = raw.strip()
        if not part:
            continue
        m = _ATTR.fullmatch(part)
        if not m:
            raise ResourcesError(f"malformed attribute {part!r}: expected NAME:VALUE")
        name, value = m.group("name"), m.group("value").strip()
        if value.startswith("[") or value.startswith("{"):
            parsed = Resources.parse(f"{name}:{value}").to_proto()[0]
            out.append(pb.Attribute(name=name, type=parsed.type, ranges=parsed.ranges, set=parsed.set))
            continue
        try:
            number = float(value)
        except ValueError:
            out.append(pb.Attribute(name=name, type=pb.Value.TEXT, text=pb.Value.Text(value=value)))
        else:
            out.append(pb.Attribute(name=name, type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=number)))
    return out


def format_attributes(attributes: list[pb.Attribute]) -> str:
    parts = []
    for a in attributes:
        if a.type == pb.Value.TEXT:
            parts.append(f"{a.name}:{a.text.value}")
        elif a.type == pb.Value.SCALAR:
            v = a.scalar.value
            parts.append(f"{a.name}:{int(v) if v == int(v) else v}")
        else:
            parts.append(str(Resources.from_proto([pb.Resource(name=a.name, type=a.type, ranges=a.ranges, set=a.set)])))
    return ";".join(parts)
