"""cgroup v2 delegation: a delegated agent makes its task cgroups under its own cgroup (read from
/proc/self/cgroup), after moving itself into its agent/ leaf ("no internal processes"), and enables the
controllers in the subtree_control on the way; on cgroup v1, or undelegated, the cgroups go where they always did.

A fake cgroup2 hierarchy in a tmp dir stands in for the kernel: mkdir gives a new cgroup its control files,
cgroup.procs moves a process, cgroup.subtree_control enables controllers and refuses, as the kernel does, in a
cgroup that holds processes (EBUSY). A real cgroup v2 host with systemd is not tested here (the test machine
has cgroup v1 and an empty cgroup2 mount).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath

import pytest

from mesos_agent.containerizer import Containerizer, _delegation
from mesos_agent.containerizer import _cgroups as cg
from mesos_agent.containerizer._delegation import (
    AGENT_LEAF,
    own_cgroup,
    place_v2,
    read_own_cgroup,
    systemd_delegated,
)
from mesos_agent.containerizer._isolation import select_backend
from mesos_agent.containerizer._names import CPU, MEM, PIDS
from mesos_agent.containerizer._types import LaunchSpec

ROOT = PurePosixPath("aiomesos/0123456789ab")
SERVICE = "system.slice/aiomesos-agent.service"
AGENT_PID = 4242
CONTROLLERS = "cpu memory pids"


class FakeCgroup2:
    """A cgroup2 hierarchy of plain files under `mount`, with the kernel's rules this code meets."""

    def __init__(self, mount: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.mount = mount
        self._mkdir, self._rmdir = os.mkdir, os.rmdir
        mount.mkdir()
        self._populate(mount, CONTROLLERS)
        monkeypatch.setattr(os, "mkdir", self.mkdir)
        monkeypatch.setattr(os, "rmdir", self.rmdir)
        monkeypatch.setattr(cg, "write_file", self.write)
        monkeypatch.setattr(_delegation, "write_file", self.write)

    def _populate(self, directory: Path, controllers: str) -> None:
        (directory / "cgroup.controllers").write_text(controllers + "\n")
        (directory / "cgroup.subtree_control").write_text("")
        (directory / "cgroup.procs").write_text("")
        (directory / "cpu.stat").write_text("usage_usec 0\n")

    def mkdir(self, path: str | os.PathLike[str], mode: int = 0o777, **kwargs: object) -> None:
        self._mkdir(path, mode)
        directory = Path(path)
        if self.mount in directory.parents:
            self._populate(directory, self.enabled(directory.parent))

    def rmdir(self, path: str | os.PathLike[str], **kwargs: object) -> None:
        directory = Path(path)
        if self.mount in directory.parents:
            if any(entry.is_dir() for entry in directory.iterdir()):
                raise OSError(errno.ENOTEMPTY, "a cgroup with children", str(path))
            if self.procs(directory):
                raise OSError(errno.EBUSY, "a cgroup with processes", str(path))
            for entry in directory.iterdir():
                entry.unlink()
        self._rmdir(path)

    def cgroup(self, path: str, procs: list[int] = ()) -> Path:  # type: ignore[assignment]
        directory = self.mount
        for part in PurePosixPath(path).parts:
            directory = directory / part
            if not directory.exists():
                self.mkdir(directory)
        (directory / "cgroup.procs").write_text("".join(f"{pid}\n" for pid in procs))
        return directory

    @staticmethod
    def procs(directory: Path) -> list[int]:
        return [int(pid) for pid in (directory / "cgroup.procs").read_text().split()]

    @staticmethod
    def enabled(directory: Path) -> str:
        return " ".join(sorted((directory / "cgroup.subtree_control").read_text().split()))

    def write(self, path: str | Path, data: str) -> None:
        target = Path(path)
        directory = target.parent
        if target.name == "cgroup.procs":
            if directory != self.mount and self.enabled(directory):
                raise OSError(errno.EBUSY, "a cgroup with controllers for its children takes no process", path)
            pid = int(data)
            for procs_file in self.mount.rglob("cgroup.procs"):
                left = [p for p in self.procs(procs_file.parent) if p != pid]
                procs_file.write_text("".join(f"{p}\n" for p in left))
            target.write_text("".join(f"{p}\n" for p in [*self.procs(directory), pid]))
        elif target.name == "cgroup.subtree_control":
            wanted = set(self.enabled(directory).split())
            available = set((directory / "cgroup.controllers").read_text().split())
            for token in data.split():
                if token[1:] not in available:
                    raise OSError(errno.ENOENT, "controller not available", path)
                if token.startswith("+"):
                    if directory != self.mount and self.procs(directory):
                        raise OSError(errno.EBUSY, "no internal processes", path)
                    wanted.add(token[1:])
                else:
                    wanted.discard(token[1:])
            target.write_text(" ".join(sorted(wanted)) + "\n")
        else:
            target.write_text(data)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroup2:
    hierarchy = FakeCgroup2(tmp_path / "cgroup", monkeypatch)
    # systemd: the slice passes the controllers down to the delegated unit's cgroup.
    hierarchy.write(hierarchy.mount / "cgroup.subtree_control", "+cpu +memory +pids")
    hierarchy.cgroup("system.slice")
    hierarchy.write(hierarchy.mount / "system.slice" / "cgroup.subtree_control", "+cpu +memory +pids")
    return hierarchy


def proc_self_cgroup(tmp_path: Path, path: str) -> Path:
    """A /proc/self/cgroup as on a systemd host with cgroup v2 only."""
    file = tmp_path / "proc-self-cgroup"
    file.write_text(f"0::/{path}\n")
    return file


def backend_for(fake: FakeCgroup2, proc: Path, parent: str) -> cg.Backend:
    mounts = [cg.Mount(fake.mount, "cgroup2", frozenset({"rw"}))]
    backend, reason = select_backend(
        ROOT, [CPU, MEM, PIDS], fake.mount, True, 64, cgroups_parent=parent, mounts=mounts, proc_self_cgroup=proc
    )
    assert backend is not None, reason
    return backend


def spec(tmp_path: Path, container_id: str) -> LaunchSpec:
    return LaunchSpec(container_id, ["true"], {}, tmp_path, tmp_path / "out", tmp_path / "err")


# --------------------------------------------------------------------------- /proc/self/cgroup


def test_own_cgroup_is_the_v2_line() -> None:
    assert own_cgroup(f"0::/{SERVICE}\n") == PurePosixPath(f"/{SERVICE}")
    # A hybrid host (cgroup v1 controllers and an empty cgroup2, like the test machine): the 0:: line still.
    assert own_cgroup("9:name=systemd:/\n4:memory:/x\n1:cpu:/\n0::/\n") == PurePosixPath("/")
    assert own_cgroup("4:memory:/x\n1:cpu,cpuacct:/\n") is None  # cgroup v1 only


def test_read_own_cgroup_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert read_own_cgroup(tmp_path / "nothing") is None
    assert read_own_cgroup(proc_self_cgroup(tmp_path, SERVICE)) == PurePosixPath(f"/{SERVICE}")


# --------------------------------------------------------------------------- where the cgroups go


MOUNT = Path("/sys/fs/cgroup")
SERVICE_DIR = MOUNT / SERVICE


def test_place_root_keeps_the_hierarchys_root() -> None:
    assert place_v2(MOUNT, "root", PurePosixPath(f"/{SERVICE}/agent"), lambda _: True).base == MOUNT


def test_place_own_is_the_agents_cgroup_with_the_agent_moving_into_its_leaf() -> None:
    place = place_v2(MOUNT, "own", PurePosixPath(f"/{SERVICE}"), lambda _: False)
    assert (place.base, place.agent_leaf) == (SERVICE_DIR, SERVICE_DIR / AGENT_LEAF)
    # Already in the leaf (systemd's DelegateSubgroup=agent, or a previous run): its parent is the base.
    place = place_v2(MOUNT, "own", PurePosixPath(f"/{SERVICE}/agent"), lambda _: False)
    assert (place.base, place.agent_leaf) == (SERVICE_DIR, SERVICE_DIR / AGENT_LEAF)


def test_place_auto_is_own_only_in_the_agent_leaf_of_a_delegated_cgroup() -> None:
    asked: list[Path] = []

    def delegated(directory: Path) -> bool:
        asked.append(directory)
        return directory == SERVICE_DIR

    assert place_v2(MOUNT, "auto", PurePosixPath(f"/{SERVICE}/agent"), delegated).base == SERVICE_DIR
    assert asked == [SERVICE_DIR]
    # Delegated, but systemd did not start the agent in the leaf (no DelegateSubgroup=): a restart with tasks
    # running could not place the new agent, so auto keeps the root.
    assert place_v2(MOUNT, "auto", PurePosixPath(f"/{SERVICE}"), delegated).base == MOUNT
    # A login session or any undelegated cgroup: the root, as before.
    session = PurePosixPath("/user.slice/user-0.slice/session-1.scope/agent")
    assert place_v2(MOUNT, "auto", session, delegated) == _delegation.V2Place(MOUNT)


def test_place_in_the_root_cgroup_or_without_cgroup_v2_is_the_root() -> None:
    for parent in ("auto", "own", "root"):
        assert place_v2(MOUNT, parent, PurePosixPath("/"), lambda _: True) == _delegation.V2Place(MOUNT)
        assert place_v2(MOUNT, parent, None, lambda _: True) == _delegation.V2Place(MOUNT)
    with pytest.raises(ValueError, match="choose from auto, own, root"):
        place_v2(MOUNT, "mine", None)


def test_systemd_delegated_reads_the_delegate_xattr(tmp_path: Path) -> None:
    directory = tmp_path / "unit"
    directory.mkdir()
    assert not systemd_delegated(directory)
    try:
        os.setxattr(directory, "user.delegate", b"1")
    except OSError as e:
        pytest.skip(f"no user xattrs on {tmp_path}: {e.strerror}")
    assert systemd_delegated(directory)


# --------------------------------------------------------------------------- a fake cgroup v2 hierarchy


def test_a_delegated_agent_moves_into_its_leaf_and_makes_task_cgroups_under_its_own(
    fake: FakeCgroup2, tmp_path: Path
) -> None:
    service = fake.cgroup(SERVICE, procs=[AGENT_PID, 4343])  # the agent, and a helper the unit started
    backend = backend_for(fake, proc_self_cgroup(tmp_path, SERVICE), "own")
    leaf = service / AGENT_LEAF
    assert fake.procs(service) == [] and sorted(fake.procs(leaf)) == [AGENT_PID, 4343]
    assert fake.enabled(service) == CONTROLLERS  # enabled once the service cgroup held no process
    assert fake.enabled(service / "aiomesos") == CONTROLLERS
    assert fake.enabled(service / ROOT) == CONTROLLERS
    assert backend.root_dirs == [service / ROOT]
    assert not (fake.mount / "aiomesos").exists()  # nothing at the root systemd owns
    paths = backend.create(spec(tmp_path, "c1"))
    assert paths == [service / ROOT / "c1"]
    assert (paths[0] / "cgroup.controllers").read_text().split() == CONTROLLERS.split()
    assert backend.container_dirs() == {"c1": paths}
    os.rmdir(paths[0])
    assert backend.teardown()
    assert not (service / "aiomesos").exists() and leaf.exists()  # the agent's own leaf stays


def test_systemds_delegate_subgroup_is_recognised_by_auto(
    fake: FakeCgroup2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = fake.cgroup(SERVICE)
    fake.cgroup(f"{SERVICE}/{AGENT_LEAF}", procs=[AGENT_PID])  # Delegate=yes + DelegateSubgroup=agent
    monkeypatch.setattr(_delegation, "systemd_delegated", lambda directory: directory == service)
    backend = backend_for(fake, proc_self_cgroup(tmp_path, f"{SERVICE}/{AGENT_LEAF}"), "auto")
    assert backend.root_dirs == [service / ROOT]
    assert fake.procs(service / AGENT_LEAF) == [AGENT_PID]


def test_a_restarted_agent_finds_the_containers_of_the_last_one(fake: FakeCgroup2, tmp_path: Path) -> None:
    service = fake.cgroup(SERVICE, procs=[AGENT_PID])
    proc = proc_self_cgroup(tmp_path, SERVICE)
    backend_for(fake, proc, "own").create(spec(tmp_path, "c1"))
    # The next agent process starts in the leaf (DelegateSubgroup=agent): the same base, the same containers.
    fake.cgroup(f"{SERVICE}/{AGENT_LEAF}", procs=[AGENT_PID + 1])
    again = backend_for(fake, proc_self_cgroup(tmp_path, f"{SERVICE}/{AGENT_LEAF}"), "own")
    assert again.container_dirs() == {"c1": [service / ROOT / "c1"]}


def test_without_the_leaf_the_kernel_refuses_the_controllers(fake: FakeCgroup2) -> None:
    """What the leaf is for: the fake kernel, like the real one, enables no controller in a cgroup with a process."""
    service = fake.cgroup(SERVICE, procs=[AGENT_PID])
    backend = cg.V2Backend(ROOT, [CPU, MEM, PIDS], service, True, 64, agent_leaf=None)
    with pytest.raises(OSError) as raised:
        backend.setup()
    assert raised.value.errno == errno.EBUSY


def test_an_undelegated_agent_keeps_the_root_and_moves_nothing(fake: FakeCgroup2, tmp_path: Path) -> None:
    session = fake.cgroup("user.slice/session-1.scope", procs=[AGENT_PID])
    backend = backend_for(fake, proc_self_cgroup(tmp_path, "user.slice/session-1.scope"), "auto")
    assert backend.root_dirs == [fake.mount / ROOT]
    assert fake.procs(session) == [AGENT_PID] and not (session / AGENT_LEAF).exists()
    assert fake.enabled(fake.mount / ROOT) == CONTROLLERS


def test_the_cgroup_dirs_of_a_delegated_backend_are_what_the_warning_names(fake: FakeCgroup2, tmp_path: Path) -> None:
    """A delegated cgroup that lacks a controller: the warning names that cgroup, not the mount."""
    (fake.mount / "system.slice" / "cgroup.subtree_control").write_text("cpu memory\n")
    service = fake.cgroup(SERVICE, procs=[AGENT_PID])
    backend = backend_for(fake, proc_self_cgroup(tmp_path, SERVICE), "own")
    assert backend.isolators == [CPU, MEM]
    assert isinstance(backend, cg.V2Backend) and backend.base == service


# --------------------------------------------------------------------------- cgroup v1: unchanged


def test_cgroup_v1_ignores_the_parent_setting(tmp_path: Path) -> None:
    mounts = []
    for subsystem in ("cpu", "memory", "pids"):
        (tmp_path / "v1" / subsystem).mkdir(parents=True)
        mounts.append(cg.Mount(tmp_path / "v1" / subsystem, "cgroup", frozenset({"rw", subsystem})))
    backend, reason = select_backend(
        ROOT,
        [CPU, MEM, PIDS],
        tmp_path / "v1",
        True,
        64,
        cgroups_parent="own",
        mounts=mounts,
        proc_self_cgroup=proc_self_cgroup(tmp_path, SERVICE),
    )
    assert backend is not None and backend.version == 1, reason
    assert sorted(backend.root_dirs) == sorted(tmp_path / "v1" / s / ROOT for s in ("cpu", "memory", "pids"))
    assert backend.teardown()


def test_the_containerizer_refuses_an_unknown_parent() -> None:
    with pytest.raises(ValueError, match="cgroups_parent 'mine'"):
        Containerizer("aiomesos/x", isolation="posix", cgroups_parent="mine")
