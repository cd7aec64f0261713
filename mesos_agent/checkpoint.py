"""The agent's checkpoint: what a restarted agent process needs to re-adopt the tasks of frameworks that asked
for `checkpoint`, and to resend their unacknowledged status updates.

Layout (under the agent's work dir):

    meta/agent_id                       the agent id the master gave
    meta/boot_id                        the host's boot id when the agent last started
    meta/frameworks/<fw>/framework.pb   FrameworkInfo
    meta/frameworks/<fw>/tasks/<task>/task.pb        TaskInfo
    meta/frameworks/<fw>/tasks/<task>/container_id   the container the task runs in
    meta/frameworks/<fw>/tasks/<task>/updates        append-only log: each status update before it is sent,
                                                      each acknowledgement as it arrives

Records in `updates` are `kind (1 byte) | length (4 bytes, big endian) | payload`; a torn last record (the
agent died mid-write) is ignored. Writes are not fsynced: they must survive the agent process dying, which the
page cache does; a host reboot invalidates every task anyway (they are reported lost).
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.sandbox import safe_id

UPDATE = b"U"
ACK = b"A"
_HEADER = struct.Struct(">cI")


@dataclass
class RecoveredTask:
    framework: rpb.FrameworkInfo
    task: tpb.TaskInfo
    container_id: str
    updates: list[tpb.TaskStatus] = field(default_factory=list)  # every update, in order
    acked: set[bytes] = field(default_factory=set)

    @property
    def unacknowledged(self) -> list[tpb.TaskStatus]:
        return [u for u in self.updates if u.uuid not in self.acked]

    @property
    def state(self) -> int:
        return self.updates[-1].state if self.updates else tpb.TASK_STAGING


class Checkpoint:
    def __init__(self, work_dir: Path) -> None:
        self.meta = work_dir / "meta"
        self.frameworks_dir = self.meta / "frameworks"

    # ------------------------------------------------------------------ identity
    def read(self, name: str) -> str:
        path = self.meta / name
        return path.read_text().strip() if path.exists() else ""

    def write(self, name: str, value: str) -> None:
        self.meta.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.meta / name, value + "\n")

    # ------------------------------------------------------------------ tasks
    def _task_dir(self, framework_id: str, task_id: str) -> Path:
        return self.frameworks_dir / safe_id(framework_id) / "tasks" / safe_id(task_id)

    def add_task(self, framework: rpb.FrameworkInfo, task: tpb.TaskInfo, container_id: str) -> None:
        fw_dir = self.frameworks_dir / safe_id(framework.id)
        task_dir = self._task_dir(framework.id, task.task_id)
        task_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(fw_dir / "framework.pb", framework.SerializeToString())
        _write_atomically(task_dir / "task.pb", task.SerializeToString())
        _write_atomically(task_dir / "container_id", container_id)

    def write_task_file(self, framework_id: str, task_id: str, name: str, value: str) -> None:
        _write_atomically(self._task_dir(framework_id, task_id) / name, value)

    def read_task_file(self, framework_id: str, task_id: str, name: str) -> str:
        path = self._task_dir(framework_id, task_id) / name
        return path.read_text().strip() if path.exists() else ""

    def update(self, framework_id: str, status: tpb.TaskStatus) -> None:
        self._append(framework_id, status.task_id, UPDATE, status.SerializeToString())

    def ack(self, framework_id: str, task_id: str, uuid: bytes) -> None:
        self._append(framework_id, task_id, ACK, uuid)

    def remove_task(self, framework_id: str, task_id: str) -> None:
        shutil.rmtree(self._task_dir(framework_id, task_id), ignore_errors=True)

    def remove_framework(self, framework_id: str) -> None:
        shutil.rmtree(self.frameworks_dir / safe_id(framework_id), ignore_errors=True)

    def has_task(self, framework_id: str, task_id: str) -> bool:
        return (self._task_dir(framework_id, task_id) / "task.pb").exists()

    def _append(self, framework_id: str, task_id: str, kind: bytes, payload: bytes) -> None:
        path = self._task_dir(framework_id, task_id) / "updates"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, _HEADER.pack(kind, len(payload)) + payload)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ recovery
    def recover(self) -> list[RecoveredTask]:
        """Every checkpointed task, with its updates and acknowledgements; unreadable entries are skipped."""
        out: list[RecoveredTask] = []
        if not self.frameworks_dir.is_dir():
            return out
        for fw_dir in sorted(self.frameworks_dir.iterdir()):
            try:
                framework = rpb.FrameworkInfo.FromString((fw_dir / "framework.pb").read_bytes())
            except (OSError, ValueError):
                continue
            tasks_dir = fw_dir / "tasks"
            if not tasks_dir.is_dir():
                continue
            for task_dir in sorted(tasks_dir.iterdir()):
                try:
                    task = tpb.TaskInfo.FromString((task_dir / "task.pb").read_bytes())
                    container_id = (task_dir / "container_id").read_text().strip()
                except (OSError, ValueError):
                    continue
                recovered = RecoveredTask(framework, task, container_id)
                for kind, payload in _records(task_dir / "updates"):
                    if kind == UPDATE:
                        recovered.updates.append(tpb.TaskStatus.FromString(payload))
                    elif kind == ACK:
                        recovered.acked.add(payload)
                out.append(recovered)
        return out


def _records(path: Path) -> Iterator[tuple[bytes, bytes]]:
    try:
        data = path.read_bytes()
    except OSError:
        return
    pos = 0
    while pos + _HEADER.size <= len(data):
        kind, length = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        if start + length > len(data):
            return  # torn last record
        yield kind, data[start : start + length]
        pos = start + length


def _write_atomically(path: Path, content: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(content, str):
        tmp.write_text(content)
    else:
        tmp.write_bytes(content)
    os.replace(tmp, path)
