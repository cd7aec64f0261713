"""Where the cgroup hierarchies are mounted (/proc/self/mountinfo), and what a cgroup2 mount offers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ._cgroupfs import read_bytes
from ._names import V1_SUBSYSTEM


@dataclass(frozen=True)
class Mount:
    mount_point: Path
    fstype: str
    options: frozenset[str]


def _unescape(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in text:
        return text
    chars = []
    at = 0
    while at < len(text):
        if text[at] == "\\" and at + 4 <= len(text) and text[at + 1 : at + 4].isdigit():
            chars.append(chr(int(text[at + 1 : at + 4], 8)))
            at += 4
        else:
            chars.append(text[at])
            at += 1
    return "".join(chars)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts listed in /proc/self/mountinfo text."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        before = left.split()  # id, parent, dev, root, mount point, ...
        after = right.split()  # fstype, source, super options
        if len(before) < 5 or len(after) < 3 or after[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append(Mount(Path(_unescape(before[4])), after[0], frozenset(after[2].split(","))))
    return mounts


def parse_proc_mounts(text: str) -> list[Mount]:
    """Same as parse_mountinfo, from /proc/mounts text (the fallback)."""
    mounts = []
    for line in text.splitlines():
        columns = line.split()  # source, mount point, fstype, options, ...
        if len(columns) >= 4 and columns[2] in ("cgroup", "cgroup2"):
            mounts.append(Mount(Path(_unescape(columns[1])), columns[2], frozenset(columns[3].split(","))))
    return mounts


def detect_mounts() -> list[Mount]:
    for path, parser in (("/proc/self/mountinfo", parse_mountinfo), ("/proc/mounts", parse_proc_mounts)):
        try:
            with open(path) as f:
                return parser(f.read())
        except OSError:
            continue
    return []


def _under(path: Path, base: Path) -> bool:
    return path == base or base in path.parents


def v1_mounts(mounts: Iterable[Mount], base: Path) -> dict[str, Path]:
    """Subsystem name -> mount point, for the v1 subsystems we know, mounted under base."""
    wanted = set(V1_SUBSYSTEM.values())
    found: dict[str, Path] = {}
    for mount in mounts:
        if mount.fstype != "cgroup" or not _under(mount.mount_point, base):
            continue
        for subsystem in mount.options & wanted:
            found.setdefault(subsystem, mount.mount_point)
    return found


def v2_mount(mounts: Iterable[Mount], base: Path) -> Path | None:
    """The cgroup2 mount at base, else the first one under base."""
    candidates = [
        mount.mount_point for mount in mounts if mount.fstype == "cgroup2" and _under(mount.mount_point, base)
    ]
    if base in candidates:
        return base
    return candidates[0] if candidates else None


def v2_controllers(mount: Path) -> set[str]:
    try:
        return set(read_bytes(mount / "cgroup.controllers").decode().split())
    except OSError:
        return set()
