"""Where the agent's cgroups go on cgroup v2: under the hierarchy's root, or under the agent's own cgroup when
that is delegated to it (systemd's ``Delegate=yes``).

systemd owns the cgroup tree except the subtrees it delegates; a delegated agent makes its task cgroups under
its own cgroup (``/proc/self/cgroup``), so they belong to its unit. The kernel's "no internal processes" rule
lets a cgroup enable controllers for its children only while it holds no process itself, so the agent lives in
a leaf of its delegated cgroup, ``agent/``: systemd puts it there with ``DelegateSubgroup=agent`` (systemd 254
and later), or the agent moves itself (and whatever else shares the cgroup) there first. A restart of a unit
whose cgroup has controllers enabled and tasks running needs systemd to start the new agent in that leaf, which
only ``DelegateSubgroup=`` does: that is what ``auto`` looks for.

``place_v2`` is pure but for the delegation check it is given; ``enter_leaf`` moves the processes.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ._cgroupfs import read_pids, write_file

PROC_SELF_CGROUP = Path("/proc/self/cgroup")
#: The leaf of its delegated cgroup the agent lives in (the unit's DelegateSubgroup=).
AGENT_LEAF = "agent"
#: Extended attributes systemd sets to "1" on the cgroup of a unit with Delegate=yes (trusted.* for root
#: readers, user.* since systemd 251 for everyone).
DELEGATE_XATTRS = ("trusted.delegate", "user.delegate")
#: --cgroups-parent: auto, own (the agent's own cgroup), root (the hierarchy's root).
CGROUPS_PARENTS = ("auto", "own", "root")


@dataclass(frozen=True)
class V2Place:
    """Where a v2 backend works: ``base`` holds ``<root>/<container>``; ``agent_leaf`` (when delegated) is the
    leaf the agent, and every other process of ``base``, must be in before ``base`` enables controllers."""

    base: Path
    agent_leaf: Path | None = None


def own_cgroup(text: str) -> PurePosixPath | None:
    """The v2 cgroup (``0::/path``) of /proc/self/cgroup text; None on a host without one."""
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, sep, path = rest.partition(":")
        if hierarchy == "0" and sep and not controllers and path.startswith("/"):
            return PurePosixPath(path)
    return None


def read_own_cgroup(proc_self_cgroup: Path = PROC_SELF_CGROUP) -> PurePosixPath | None:
    try:
        return own_cgroup(proc_self_cgroup.read_text())
    except OSError:
        return None


def systemd_delegated(directory: Path) -> bool:
    """Whether systemd marked the cgroup at directory as delegated (its delegate xattr says 1)."""
    for name in DELEGATE_XATTRS:
        with contextlib.suppress(OSError):
            if os.getxattr(directory, name).strip() == b"1":
                return True
    return False


def place_v2(
    mount: Path,
    parent: str,
    own: PurePosixPath | None,
    delegated: Callable[[Path], bool] | None = None,
) -> V2Place:
    """Where the cgroups go, for --cgroups-parent ``parent`` and the agent's own cgroup ``own``.

    root: under the mount (as on cgroup v1). own: under the agent's cgroup (its parent when the agent already is
    in the ``agent`` leaf), the agent moving into that leaf. auto: own when the agent already is in the ``agent``
    leaf of a cgroup systemd delegated (``Delegate=yes`` + ``DelegateSubgroup=agent``; ``delegated`` tells,
    by default ``systemd_delegated``), else root.
    """
    if parent not in CGROUPS_PARENTS:
        raise ValueError(f"cgroups parent {parent!r}: choose from {', '.join(CGROUPS_PARENTS)}")
    if parent == "root" or own is None or own == PurePosixPath("/"):
        return V2Place(mount)
    own_dir = mount.joinpath(*own.parts[1:])
    in_leaf = own.name == AGENT_LEAF
    base = own_dir.parent if in_leaf else own_dir
    if parent == "own":
        return V2Place(base, own_dir if in_leaf else own_dir / AGENT_LEAF)
    if in_leaf and (delegated or systemd_delegated)(base):
        return V2Place(base, own_dir)
    return V2Place(mount)


def enter_leaf(base: Path, leaf: Path) -> None:
    """Move every process of base (the agent among them) into leaf, creating it: base may then enable
    controllers for its children. Processes that end meanwhile are skipped."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(leaf)
    for pid in read_pids(base / "cgroup.procs"):
        try:
            write_file(leaf / "cgroup.procs", str(pid))
        except ProcessLookupError:
            continue
        except OSError as e:
            if e.errno != errno.ESRCH:
                raise
