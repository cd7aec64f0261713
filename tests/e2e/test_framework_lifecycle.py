"""A framework's life with real daemons: heartbeats, failover within and past failover_timeout, reconciliation
and offers the master rescinds after --offer-timeout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient
from tests.e2e.conftest import FAST_AGENT
from tests.e2e.harness import Recorder, alive, eventually, framework, task, task_pid

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
MASTER = ["--allocation-interval", "0.2", "--heartbeat-interval", "0.3"]
TERMINAL = {tpb.TASK_FINISHED, tpb.TASK_FAILED, tpb.TASK_KILLED, tpb.TASK_ERROR, tpb.TASK_LOST, tpb.TASK_DROPPED}


async def _cluster(tmp_path: Path, master_flags: list[str] | None = None) -> LocalCluster:
    c = LocalCluster(tmp_path, agents=1, master_flags=[*MASTER, *(master_flags or [])], agent_flags=list(FAST_AGENT))
    await c.start()  # stops what did start if it fails
    return c


async def _framework_state(master: str, framework_id: str) -> str:
    async with OperatorClient(master) as op:
        resp = await op.frameworks()
    if any(f.framework_info.id == framework_id for f in resp.completed_frameworks):
        return "completed"
    live = [f for f in resp.frameworks if f.framework_info.id == framework_id]
    return ("connected" if live[0].connected else "disconnected") if live else "unknown"


async def test_heartbeats_keep_an_idle_subscription(tmp_path: Path) -> None:
    c = await _cluster(tmp_path)
    try:
        rec = Recorder(auto_decline=True)
        async with framework(c.master_address, rec, name="idle") as driver:
            assert driver.heartbeat_interval == pytest.approx(0.3)
            # Ten intervals of silence but for heartbeats: the driver never gives the master up for dead.
            await eventually(lambda: driver.heartbeats >= 10, timeout=20, what="ten heartbeats")
            assert rec.registrations == [driver.framework_id]
    finally:
        assert await c.stop() == []


async def test_failover_within_the_timeout_keeps_tasks_and_past_it_kills_them(tmp_path: Path) -> None:
    c = await _cluster(tmp_path)
    try:
        rec = Recorder()
        async with framework(c.master_address, rec, name="fo", failover_timeout=2.0, teardown=False) as driver:
            fid = driver.framework_id
            offer = await rec.next_offer()
            driver.accept([offer.id], [task("long", "sleep 600", offer.agent_id)])
            await rec.wait_state("long", {tpb.TASK_RUNNING})
        # Gone without TEARDOWN: disconnected, its task still running, until failover_timeout passes.
        assert await _framework_state(c.master_address, fid) == "disconnected"
        pid = await eventually(lambda: task_pid("long", c.work_dir), what="the task's process")
        back = Recorder()
        async with framework(
            c.master_address, back, name="fo", failover_timeout=2.0, framework_id=fid, teardown=False
        ) as again:
            assert back.registrations == [fid]
            again.reconcile()
            back_status = await eventually(
                lambda: _reconciled(back, "long"), what="the failed-over framework to reconcile its task"
            )
            assert back_status.state == tpb.TASK_RUNNING
        assert psutil.pid_exists(pid)

        # This time it stays away: after 2 s the master removes it and kills its task.
        async def removed() -> bool:
            return await _framework_state(c.master_address, fid) == "completed"

        await eventually(removed, timeout=20, what="the master to remove the framework after its failover timeout")
        await eventually(lambda: not alive(pid), timeout=20, what="the task's process to be killed")
        async with OperatorClient(c.master_address) as op:
            done = [t for t in (await op.tasks()).completed_tasks if t.task.task_id == "long"]
        assert [t.state for t in done] == [tpb.TASK_KILLED]
    finally:
        assert await c.stop() == []


def _reconciled(rec: Recorder, task_id: str) -> tpb.TaskStatus | None:
    """The latest update (a reconciliation answer, here) for task_id that arrived at rec."""
    return rec.latest(task_id)


async def test_reconciliation_answers_from_the_masters_state(tmp_path: Path) -> None:
    c = await _cluster(tmp_path)
    try:
        rec = Recorder()
        async with framework(c.master_address, rec, name="rec") as driver:
            offer = await rec.next_offer()
            driver.accept(
                [offer.id], [task("runs", "sleep 600", offer.agent_id), task("ends", "exit 4", offer.agent_id)]
            )
            await rec.wait_state("runs", {tpb.TASK_RUNNING})
            await rec.wait_state("ends", {tpb.TASK_FAILED})
            before = len(rec.statuses)
            driver.reconcile()  # implicit: every task the master knows of that is not terminal
            implicit = await eventually(
                lambda: [s for s in rec.statuses[before:] if s.reason == tpb.TaskStatus.REASON_RECONCILIATION],
                what="the implicit reconciliation",
            )
            assert [(s.task_id, s.state) for s in implicit] == [("runs", tpb.TASK_RUNNING)]
            assert all(s.source == tpb.TaskStatus.SOURCE_MASTER for s in implicit)
            before = len(rec.statuses)
            driver.reconcile([("runs", offer.agent_id), ("ends", offer.agent_id), ("never", "")])
            explicit = await eventually(
                lambda: _at_least(rec.statuses[before:], 3), what="three explicit reconciliation answers"
            )
            got = {s.task_id: (s.state, s.exit_code if s.HasField("exit_code") else None) for s in explicit}
            assert got == {
                "runs": (tpb.TASK_RUNNING, None),
                "ends": (tpb.TASK_FAILED, 4),  # completed: its terminal state and exit code
                "never": (tpb.TASK_LOST, None),  # unknown, framework not PARTITION_AWARE: Mesos says LOST
            }
            driver.kill("runs")
            await rec.wait_state("runs", {tpb.TASK_KILLED})
        # A partition-aware framework hears UNKNOWN for a task nobody knows.
        aware = Recorder(auto_decline=True)
        partition_aware = rpb.FrameworkInfo.Capability.PARTITION_AWARE
        async with framework(c.master_address, aware, name="aware", capabilities=[partition_aware]) as driver:
            driver.reconcile([("never", "")])
            status = await eventually(lambda: aware.latest("never"), what="the answer for an unknown task")
            assert status.state == tpb.TASK_UNKNOWN
    finally:
        assert await c.stop() == []


def _at_least(statuses: list[tpb.TaskStatus], n: int) -> list[tpb.TaskStatus] | None:
    return statuses if len(statuses) >= n else None


async def test_offers_held_past_the_offer_timeout_are_rescinded_and_cannot_be_used(tmp_path: Path) -> None:
    c = await _cluster(tmp_path, ["--offer-timeout", "0.5"])
    try:
        rec = Recorder()
        async with framework(c.master_address, rec, name="slow") as driver:
            offer = await rec.next_offer()
            await eventually(lambda: offer.id in rec.rescinded, timeout=10, what="the stale offer to be rescinded")
            driver.accept([offer.id], [task("late", "true", offer.agent_id)])
            status = await rec.wait_state("late", TERMINAL)
            assert status.state == tpb.TASK_DROPPED and status.reason == tpb.TaskStatus.REASON_INVALID_OFFERS
            assert offer.id in status.message
            # No filter was installed: the same agent is offered again at once.
            again = await rec.next_offer(timeout=10)
            assert again.agent_id == offer.agent_id and again.id != offer.id
            driver.accept([again.id], [task("in-time", "true", again.agent_id)])
            assert (await rec.wait_state("in-time", TERMINAL)).state == tpb.TASK_FINISHED
    finally:
        assert await c.stop() == []


async def test_suppression_is_per_role_and_shown_to_operators(tmp_path: Path) -> None:
    c = await _cluster(tmp_path)
    try:
        rec = Recorder(auto_decline=True)
        async with framework(c.master_address, rec, name="two-roles", roles=["a", "b"]) as driver:

            async def view() -> tuple[list[str], bool]:
                async with OperatorClient(c.master_address) as op:
                    (f,) = (await op.frameworks()).frameworks
                return list(f.suppressed_roles), f.suppressed

            driver.suppress(["a"])
            assert await eventually(lambda: _when(view(), (["a"], False)), what="a suppressed") == (["a"], False)
            driver.suppress(["b"])
            await eventually(lambda: _when(view(), (["a", "b"], True)), what="both suppressed")
            driver.revive(["a"])
            await eventually(lambda: _when(view(), (["b"], False)), what="a revived")
    finally:
        assert await c.stop() == []


async def _when(current: Any, expected: Any) -> Any:
    """`expected` once the awaited `current` equals it, else None (for eventually())."""
    got = await current
    return got if got == expected else None
