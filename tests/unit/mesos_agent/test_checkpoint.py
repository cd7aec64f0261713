"""The agent's checkpoint: task logs, acknowledgements, torn records, the earlier layout, clean-up."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.checkpoint import ACK, UPDATE, Checkpoint, CheckpointError, record

FW = rpb.FrameworkInfo(id="fw-1", name="fw", checkpoint=True)


def task(task_id: str = "t1") -> tpb.TaskInfo:
    return tpb.TaskInfo(task_id=task_id, name=task_id, command=rpb.CommandInfo(shell=True, value="sleep 1"))


def status(task_id: str, state: int, uuid: bytes, **kw: object) -> tpb.TaskStatus:
    return tpb.TaskStatus(task_id=task_id, state=state, uuid=uuid, **kw)  # type: ignore[arg-type]


def test_identity_values_survive(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path)
    assert cp.read("agent_id") == ""
    cp.write("agent_id", "S1")
    assert Checkpoint(tmp_path).read("agent_id") == "S1"
    assert not list((tmp_path / "meta").glob(".*tmp")), "no temporary file left"


def test_a_task_its_updates_and_acks_are_recovered(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path)
    cp.add_task(FW, task("t1"), "c1")
    cp.set_gpus("fw-1", "t1", (0, 2))
    cp.update("fw-1", status("t1", tpb.TASK_STARTING, b"u1"))
    cp.update("fw-1", status("t1", tpb.TASK_RUNNING, b"u2", timestamp=123.0))
    cp.ack("fw-1", "t1", b"u1")
    cp.update("fw-1", status("t1", tpb.TASK_RUNNING, b"u3", healthy=True))
    cp.add_task(FW, task("t2"), "c2")

    recovered = {r.task.task_id: r for r in Checkpoint(tmp_path).recover()}
    assert set(recovered) == {"t1", "t2"}
    t1 = recovered["t1"]
    assert t1.framework == FW and t1.container_id == "c1" and t1.gpus == (0, 2)
    assert [u.uuid for u in t1.updates] == [b"u1", b"u2", b"u3"]
    assert [u.uuid for u in t1.unacknowledged] == [b"u2", b"u3"]
    assert t1.state == tpb.TASK_RUNNING
    assert t1.launched_at() == 123.0 and t1.healthy() is True
    t2 = recovered["t2"]
    assert t2.updates == [] and t2.state == tpb.TASK_STAGING and t2.launched_at() is None and t2.healthy() is None


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path)
    cp.add_task(FW, task("t1"), "c1")
    cp.update("fw-1", status("t1", tpb.TASK_RUNNING, b"u1"))
    whole = record(UPDATE, status("t1", tpb.TASK_FINISHED, b"u2").SerializeToString())
    log = Path(cp.task_path("fw-1", "t1"))
    for cut in (1, 3, len(whole) - 1):  # torn in the header, just after it, one byte short
        data = log.read_bytes()
        log.write_bytes(data + whole[:cut])
        (t1,) = Checkpoint(tmp_path).recover()
        assert [u.uuid for u in t1.updates] == [b"u1"], cut
        assert t1.state == tpb.TASK_RUNNING
        log.write_bytes(data)
    # A torn acknowledgement does not acknowledge.
    log.write_bytes(log.read_bytes() + record(ACK, b"u1")[:-1])
    (t1,) = Checkpoint(tmp_path).recover()
    assert [u.uuid for u in t1.unacknowledged] == [b"u1"]


def test_a_log_torn_at_its_creation_is_dropped_and_so_is_its_framework(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path)
    cp.add_task(FW, task("t1"), "c1")
    log = Path(cp.task_path("fw-1", "t1"))
    log.write_bytes(log.read_bytes()[:7])  # the TaskInfo record cut short: the task was never launched
    assert Checkpoint(tmp_path).recover() == []
    assert not log.exists()
    assert not (tmp_path / "meta" / "frameworks" / "fw-1").exists(), "a framework without tasks is forgotten"


def test_garbage_in_a_log_skips_that_task_only(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path)
    cp.add_task(FW, task("t1"), "c1")
    cp.add_task(FW, task("t2"), "c2")
    Path(cp.task_path("fw-1", "t1")).write_bytes(struct.pack(">cI", b"Z", 3) + b"abc")
    assert [r.task.task_id for r in Checkpoint(tmp_path).recover()] == ["t2"]


def test_removing_the_last_task_removes_the_framework(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path)
    cp.add_task(FW, task("t1"), "c1")
    cp.add_task(FW, task("t2"), "c2")
    fw_dir = tmp_path / "meta" / "frameworks" / "fw-1"
    cp.remove_task("fw-1", "t1", last=True)  # t2 is still checkpointed: the framework stays
    assert (fw_dir / "framework.pb").exists() and not cp.has_task("fw-1", "t1")
    cp.remove_task("fw-1", "t2", last=False)  # the owner still holds a task of it (being prepared): stays
    assert (fw_dir / "framework.pb").exists()
    cp.remove_framework_if_empty("fw-1")
    assert not fw_dir.exists()
    # Written again with the next task (the cache of what is on disk was dropped with it).
    cp.add_task(FW, task("t3"), "c3")
    assert (fw_dir / "framework.pb").exists()


def test_framework_info_is_written_once_unless_it_changes(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path)
    cp.add_task(FW, task("t1"), "c1")
    pb = tmp_path / "meta" / "frameworks" / "fw-1" / "framework.pb"
    first = pb.stat().st_ino
    cp.add_task(FW, task("t2"), "c2")
    assert pb.stat().st_ino == first, "rewritten for every task"
    changed = rpb.FrameworkInfo(id="fw-1", name="fw renamed", checkpoint=True)
    cp.add_task(changed, task("t3"), "c3")
    assert rpb.FrameworkInfo.FromString(pb.read_bytes()).name == "fw renamed"


def test_appending_to_a_task_without_a_log_is_an_error(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="has no checkpoint"):
        cp.update("fw-1", status("nope", tpb.TASK_RUNNING, b"u"))


def test_the_earlier_layout_is_recovered_and_rewritten(tmp_path: Path) -> None:
    task_dir = tmp_path / "meta" / "frameworks" / "fw-1" / "tasks" / "old"
    task_dir.mkdir(parents=True)
    (task_dir.parent.parent / "framework.pb").write_bytes(FW.SerializeToString())
    (task_dir / "task.pb").write_bytes(task("old").SerializeToString())
    (task_dir / "container_id").write_text("c-old")
    (task_dir / "gpus").write_text("1")
    updates = record(UPDATE, status("old", tpb.TASK_RUNNING, b"u1").SerializeToString()) + record(ACK, b"u1")
    (task_dir / "updates").write_bytes(updates + record(UPDATE, b"torn")[:4])
    cp = Checkpoint(tmp_path)
    (old,) = cp.recover()
    assert (old.task.task_id, old.container_id, old.gpus, old.state) == ("old", "c-old", (1,), tpb.TASK_RUNNING)
    assert old.unacknowledged == []
    assert task_dir.is_file(), "rewritten as a log"
    cp.update("fw-1", status("old", tpb.TASK_FINISHED, b"u2"))
    (again,) = Checkpoint(tmp_path).recover()
    assert [u.uuid for u in again.unacknowledged] == [b"u2"] and again.gpus == (1,)


def test_one_file_per_task(tmp_path: Path) -> None:
    """Creating files is the expensive part of checkpointing a burst of tasks: one per task, none per update."""
    cp = Checkpoint(tmp_path)
    cp.add_task(FW, task("t0"), "c0")
    before = sum(len(files) + len(dirs) for _, dirs, files in os.walk(tmp_path))
    for i in range(1, 11):
        cp.add_task(FW, task(f"t{i}"), f"c{i}")
        for n, state in enumerate((tpb.TASK_STARTING, tpb.TASK_RUNNING, tpb.TASK_FINISHED)):
            cp.update("fw-1", status(f"t{i}", state, f"u{i}.{n}".encode()))
            cp.ack("fw-1", f"t{i}", f"u{i}.{n}".encode())
    after = sum(len(files) + len(dirs) for _, dirs, files in os.walk(tmp_path))
    assert after - before == 10


def test_ids_that_shared_a_name_have_their_own_logs_and_old_names_are_renamed(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path)
    fw = rpb.FrameworkInfo(id="fw:1", name="fw", checkpoint=True)
    cp.add_task(fw, task("a/b"), "c1")
    cp.add_task(fw, task("a_b"), "c2")
    cp.update("fw:1", status("a/b", tpb.TASK_RUNNING, b"u1"))
    assert {r.task.task_id: r.container_id for r in Checkpoint(tmp_path).recover()} == {"a/b": "c1", "a_b": "c2"}

    # Written by an earlier version, which spelled `fw:1` and `t/1` as `fw_1` and `t_1`: renamed when recovered.
    old = tmp_path / "old"
    cp = Checkpoint(old)
    cp.add_task(fw, task("t/1"), "c3")
    tasks_dir = old / "meta" / "frameworks" / "fw%3A1" / "tasks"
    os.rename(tasks_dir / "t%2F1", tasks_dir / "t_1")
    os.rename(tasks_dir.parent, tasks_dir.parent.with_name("fw_1"))
    again = Checkpoint(old)
    assert [r.task.task_id for r in again.recover()] == ["t/1"]
    again.update("fw:1", status("t/1", tpb.TASK_RUNNING, b"u1"))  # found under its new name
    assert [u.uuid for u in Checkpoint(old).recover()[0].updates] == [b"u1"]
