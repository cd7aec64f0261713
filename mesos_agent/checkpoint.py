"""The agent's checkpoint: what a restarted agent process needs to re-adopt the tasks of frameworks that asked
for `checkpoint`, and to resend their unacknowledged status updates.

Layout (under the agent's work dir):

    meta/agent_id                       the agent id the master gave
    meta/boot_id                        the host's boot id when the agent last started
    meta/frameworks/<fw>/framework.pb   FrameworkInfo (while the agent holds a checkpointed task of the framework)
    meta/frameworks/<fw>/tasks/<task>   the task's log, append-only

A task's log is a sequence of records `kind (1 byte) | length (4 bytes, big endian) | payload`:

    T  TaskInfo          }  both in the one write that creates the log, before the task is launched
    C  the container id  }
    G  the GPU indices given to it ("0,1")
    U  a TaskStatus      each status update, before it is sent
    A  an update's uuid  each acknowledgement, as it arrives

A torn last record (the agent died mid-write) is ignored; a log without its T and C records (torn as it was
created, so the task was never launched) is dropped. One file per task: creating files is the expensive part of
a checkpoint, and a burst of launches creates one per task.

Writes are not fsynced: they must survive the agent process dying, which the page cache does; a host reboot
invalidates every task anyway (they are reported lost).

The layout of earlier versions (`tasks/<task>/` holding `task.pb`, `container_id`, `gpus` and `updates`) is read
too, and rewritten as a log when recovered.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent import legacy_fields
from mesos_agent.sandbox import encode_id

TASK = b"T"
CONTAINER = b"C"
GPUS = b"G"
UPDATE = b"U"
ACK = b"A"
_KINDS = {TASK, CONTAINER, GPUS, UPDATE, ACK}
_HEADER = struct.Struct(">cI")
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC


class CheckpointError(OSError):
    """A checkpoint write failed (or its task's log is gone)."""


@dataclass
class RecoveredTask:
    framework: rpb.FrameworkInfo
    task: tpb.TaskInfo
    container_id: str
    updates: list[tpb.TaskStatus] = field(default_factory=list)  # every update, in order
    acked: set[bytes] = field(default_factory=set)
    gpus: tuple[int, ...] = ()

    @property
    def unacknowledged(self) -> list[tpb.TaskStatus]:
        return [u for u in self.updates if u.uuid not in self.acked]

    @property
    def state(self) -> int:
        return self.updates[-1].state if self.updates else tpb.TASK_STAGING

    def launched_at(self) -> float | None:
        """When the task was first reported running (the TASK_RUNNING update's timestamp), if it was."""
        return next((u.timestamp for u in self.updates if u.state == tpb.TASK_RUNNING), None)

    def healthy(self) -> bool | None:
        """The health last reported, if any was."""
        marked = [u.healthy for u in self.updates if u.HasField("healthy")]
        return marked[-1] if marked else None


def record(kind: bytes, payload: bytes) -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


class Checkpoint:
    def __init__(self, work_dir: Path) -> None:
        self.meta = work_dir / "meta"
        self.frameworks_dir = self.meta / "frameworks"
        self._root = str(self.frameworks_dir)
        self._frameworks: dict[str, bytes] = {}  # framework id -> the FrameworkInfo on disk (serialized)

    # ------------------------------------------------------------------ identity
    def read(self, name: str) -> str:
        path = self.meta / name
        return path.read_text().strip() if path.exists() else ""

    def write(self, name: str, value: str) -> None:
        self.meta.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.meta / name, value + "\n")

    # ------------------------------------------------------------------ tasks
    def _framework_dir(self, framework_id: str) -> str:
        return f"{self._root}/{encode_id(framework_id)}"

    def task_path(self, framework_id: str, task_id: str) -> str:
        return f"{self._root}/{encode_id(framework_id)}/tasks/{encode_id(task_id)}"

    def add_framework(self, framework: rpb.FrameworkInfo) -> None:
        """Write framework.pb, unless what is on disk is this FrameworkInfo already."""
        data = framework.SerializeToString(deterministic=True)
        if self._frameworks.get(framework.id) == data:
            return
        fw_dir = self._framework_dir(framework.id)
        os.makedirs(f"{fw_dir}/tasks", exist_ok=True)
        _write_atomically(Path(fw_dir, "framework.pb"), data)
        self._frameworks[framework.id] = data

    def add_task(self, framework: rpb.FrameworkInfo, task: tpb.TaskInfo, container_id: str) -> None:
        """The framework's info and the task's log (see `add_task_log`)."""
        self.add_framework(framework)
        self.add_task_log(framework.id, task, container_id)

    def add_task_log(self, framework_id: str, task: tpb.TaskInfo, container_id: str) -> None:
        """The task's log, created with its TaskInfo and container id (a task of that id before is replaced).
        The framework's must be there (`add_framework`)."""
        write_new_log(*self.new_log(framework_id, task, container_id))

    def new_log(self, framework_id: str, task: tpb.TaskInfo, container_id: str) -> tuple[str, bytes]:
        """The path and first records of a task's log, for `write_new_log` (which a worker thread can run: it
        touches nothing but the file)."""
        data = record(TASK, task.SerializeToString()) + record(CONTAINER, container_id.encode())
        return self.task_path(framework_id, task.task_id), data

    def set_gpus(self, framework_id: str, task_id: str, gpus: tuple[int, ...]) -> None:
        self._append(framework_id, task_id, record(GPUS, ",".join(map(str, gpus)).encode()))

    def update(self, framework_id: str, status: tpb.TaskStatus) -> None:
        self._append(framework_id, status.task_id, record(UPDATE, status.SerializeToString()))

    def ack(self, framework_id: str, task_id: str, uuid: bytes) -> None:
        self._append(framework_id, task_id, record(ACK, uuid))

    def remove_task(self, framework_id: str, task_id: str, *, last: bool = False) -> None:
        """Forget the task; and its framework too when `last` (the owner holds no other task of it) and no other
        task of it is checkpointed."""
        path = self.task_path(framework_id, task_id)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except (IsADirectoryError, PermissionError):  # the earlier layout (unlink of a directory: EISDIR/EPERM)
            shutil.rmtree(path, ignore_errors=True)
        if last:
            self.remove_framework_if_empty(framework_id)

    def remove_framework_if_empty(self, framework_id: str) -> None:
        fw_dir = self._framework_dir(framework_id)
        try:
            os.rmdir(f"{fw_dir}/tasks")
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return  # other tasks of the framework are still checkpointed
            raise
        self._frameworks.pop(framework_id, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{fw_dir}/framework.pb")
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(fw_dir)

    def remove_framework(self, framework_id: str) -> None:
        self._frameworks.pop(framework_id, None)
        shutil.rmtree(self._framework_dir(framework_id), ignore_errors=True)

    def has_task(self, framework_id: str, task_id: str) -> bool:
        return os.path.exists(self.task_path(framework_id, task_id))

    def frameworks(self) -> list[str]:
        """The directory names of the frameworks with a checkpoint."""
        try:
            return sorted(os.listdir(self.frameworks_dir))
        except FileNotFoundError:
            return []

    def _append(self, framework_id: str, task_id: str, data: bytes) -> None:
        path = self.task_path(framework_id, task_id)
        try:
            fd = os.open(path, _APPEND)
        except FileNotFoundError:
            raise CheckpointError(
                errno.ENOENT, f"task {task_id!r} of framework {framework_id!r} has no checkpoint"
            ) from None
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ recovery
    def recover(self) -> list[RecoveredTask]:
        """Every checkpointed task, with its updates and acknowledgements. Unreadable entries are skipped; logs
        torn at their creation, and frameworks without a task left, are removed; tasks in the earlier layout are
        rewritten as logs."""
        out: list[RecoveredTask] = []
        for name in self.frameworks():
            fw_dir = self.frameworks_dir / name
            try:
                framework = rpb.FrameworkInfo.FromString((fw_dir / "framework.pb").read_bytes())
            except (OSError, ValueError):
                continue
            fw_dir = _renamed(fw_dir, encode_id(framework.id))
            tasks_dir = fw_dir / "tasks"
            entries = sorted(tasks_dir.iterdir()) if tasks_dir.is_dir() else []
            for entry in entries:
                recovered = _read_old_layout(framework, entry) if entry.is_dir() else _read_log(framework, entry)
                if recovered is None:  # created torn (the task was never launched), or damaged: of no use
                    if entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
                    continue
                entry = _renamed(entry, encode_id(recovered.task.task_id))
                if entry.is_dir():
                    self._migrate(recovered, entry)
                out.append(recovered)
            self._frameworks[framework.id] = framework.SerializeToString(deterministic=True)
            self.remove_framework_if_empty(framework.id)
        return out

    def _migrate(self, recovered: RecoveredTask, old: Path) -> None:
        data = record(TASK, recovered.task.SerializeToString()) + record(CONTAINER, recovered.container_id.encode())
        if recovered.gpus:
            data += record(GPUS, ",".join(map(str, recovered.gpus)).encode())
        for u in recovered.updates:
            data += record(UPDATE, u.SerializeToString())
        for uuid in sorted(recovered.acked):
            data += record(ACK, uuid)
        tmp = old.with_name(f".{old.name}.log")
        tmp.write_bytes(data)
        shutil.rmtree(old)
        os.replace(tmp, old)


def _renamed(path: Path, name: str) -> Path:
    """`path` renamed to `name` (an id's directory name, as `encode_id` spells it now: an earlier version
    spelled some ids otherwise), unless that name is taken; the path it is then at."""
    if path.name == name:
        return path
    target = path.with_name(name)
    if target.exists():
        return path
    try:
        os.rename(path, target)
    except OSError:
        return path
    return target


def _read_log(framework: rpb.FrameworkInfo, path: Path) -> RecoveredTask | None:
    task: tpb.TaskInfo | None = None
    container_id = ""
    gpus: tuple[int, ...] = ()
    updates: list[tpb.TaskStatus] = []
    acked: set[bytes] = set()
    try:
        for kind, payload in _records(path):
            if kind == TASK:
                task = legacy_fields.task_info(tpb.TaskInfo.FromString(payload))
            elif kind == CONTAINER:
                container_id = payload.decode()
            elif kind == GPUS:
                gpus = _gpus(payload.decode())
            elif kind == UPDATE:
                updates.append(legacy_fields.task_status(tpb.TaskStatus.FromString(payload)))
            elif kind == ACK:
                acked.add(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if task is None or not container_id:
        return None
    return RecoveredTask(framework, task, container_id, updates, acked, gpus)


def _read_old_layout(framework: rpb.FrameworkInfo, task_dir: Path) -> RecoveredTask | None:
    try:
        task = legacy_fields.task_info(tpb.TaskInfo.FromString((task_dir / "task.pb").read_bytes()))
        container_id = (task_dir / "container_id").read_text().strip()
        gpus_file = task_dir / "gpus"
        gpus = _gpus(gpus_file.read_text().strip()) if gpus_file.exists() else ()
        recovered = RecoveredTask(framework, task, container_id, gpus=gpus)
        for kind, payload in _records(task_dir / "updates"):
            if kind == UPDATE:
                recovered.updates.append(legacy_fields.task_status(tpb.TaskStatus.FromString(payload)))
            elif kind == ACK:
                recovered.acked.add(payload)
    except (OSError, ValueError):
        return None
    return recovered if container_id else None


def _gpus(text: str) -> tuple[int, ...]:
    return tuple(int(i) for i in text.split(",") if i.strip())


def _records(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """The complete records of a log; a torn last record ends it. A record of unknown kind means the log is not
    one (or is damaged): ValueError."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return
    pos = 0
    while pos + _HEADER.size <= len(data):
        kind, length = _HEADER.unpack_from(data, pos)
        if kind not in _KINDS:
            raise ValueError(f"{path}: unknown record kind {kind!r} at offset {pos}")
        start = pos + _HEADER.size
        if start + length > len(data):
            return  # torn last record
        yield kind, data[start : start + length]
        pos = start + length


def write_new_log(path: str, data: bytes) -> None:
    """Create (or replace) a task's log with `data`, its first records."""
    try:
        fd = os.open(path, _CREATE, 0o600)
    except IsADirectoryError:  # a task of that id checkpointed in the earlier layout
        shutil.rmtree(path, ignore_errors=True)
        fd = os.open(path, _CREATE, 0o600)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_atomically(path: Path, content: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(content, str):
        tmp.write_text(content)
    else:
        tmp.write_bytes(content)
    os.replace(tmp, path)
