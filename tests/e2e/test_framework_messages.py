"""Framework messages to a command task with real daemons (secure, as users run them): the driver's
`message(..., path=)` goes through the master to the agent, which writes the data into the task's sandbox; the
task sees the whole file, and a second message replaces it. A path that is not a plain file name is the master's
error event for that call, naming `message.path`, and the subscription goes on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.local_cluster import LocalCluster
from tests.e2e.harness import Recorder, eventually, framework, task

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]

# Waits for the file `msg` in its sandbox (its working directory), prints it, waits for it to change, prints it.
READER = (
    'until [ -f msg ]; do sleep 0.05; done; first=$(cat msg); echo "first:$first"; '
    'until [ "$(cat msg)" != "$first" ]; do sleep 0.05; done; echo "second:$(cat msg)"'
)


@pytest.fixture(scope="module")
def cluster(module_cluster: LocalCluster) -> LocalCluster:
    """One cluster for the module: its tasks end before each test does."""
    return module_cluster


def sandbox(cluster: LocalCluster, task_id: str) -> Path | None:
    found = [
        p
        for d in cluster.agent_daemons
        for p in d.work_dir.glob(f"agents/*/frameworks/*/executors/{task_id}/runs/latest")
    ]
    return found[0].resolve() if found else None


def stdout(cluster: LocalCluster, task_id: str) -> str:
    where = sandbox(cluster, task_id)
    return (where / "stdout").read_text() if where is not None else ""


async def test_a_task_sees_each_message_written_whole_into_its_sandbox(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec) as driver:
        offer = await rec.next_offer()
        driver.accept([offer.id], [task("reader", READER, offer.agent_id)])
        await rec.wait_state("reader", {tpb.TASK_RUNNING})

        driver.message(offer.agent_id, "reader", b"hello from the framework", path="msg")
        await eventually(lambda: "first:" in stdout(cluster, "reader"), what="the task to read the first message")
        driver.message(offer.agent_id, "reader", b"and then this", path="msg")
        status = await rec.wait_state("reader", {tpb.TASK_FINISHED, tpb.TASK_FAILED, tpb.TASK_KILLED})

        assert status.state == tpb.TASK_FINISHED, status
        assert stdout(cluster, "reader") == "first:hello from the framework\nsecond:and then this\n"
        run_dir = sandbox(cluster, "reader")
        assert run_dir is not None
        # The task's own file (it runs as the sandbox's owner), and nothing else of the writes is left there.
        written, sandbox_owner = (run_dir / "msg").stat(), run_dir.stat()
        assert (written.st_uid, written.st_gid) == (sandbox_owner.st_uid, sandbox_owner.st_gid)
        assert sorted(os.listdir(run_dir)) == ["msg", "stderr", "stdout"]
        assert rec.errors == []


async def test_a_path_that_is_not_a_file_name_is_an_error_naming_the_field(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec) as driver:
        offer = await rec.next_offer()
        driver.accept([offer.id], [task("reader2", READER, offer.agent_id)])
        await rec.wait_state("reader2", {tpb.TASK_RUNNING})

        driver.message(offer.agent_id, "reader2", b"escaped", path="../escape")
        [error] = await eventually(lambda: rec.errors, what="the master's error for the bad path")
        assert error == (
            "MESSAGE rejected: message.path '../escape': '/' is not allowed: a file name in the task's sandbox is "
            "letters, digits, '.', '_' and '-'"
        )
        run_dir = sandbox(cluster, "reader2")
        assert run_dir is not None and not (run_dir.parent / "escape").exists()

        # The subscription goes on: good messages after it are delivered.
        driver.message(offer.agent_id, "reader2", b"one", path="msg")
        await eventually(lambda: "first:" in stdout(cluster, "reader2"), what="the task to read the first message")
        driver.message(offer.agent_id, "reader2", b"two", path="msg")
        status = await rec.wait_state("reader2", {tpb.TASK_FINISHED, tpb.TASK_FAILED, tpb.TASK_KILLED})
        assert status.state == tpb.TASK_FINISHED, status
        assert stdout(cluster, "reader2") == "first:one\nsecond:two\n"
        assert rec.errors == [error]
