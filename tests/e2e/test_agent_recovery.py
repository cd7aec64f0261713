"""An agent process that dies (kill -9) leaves the tasks of checkpointing frameworks running; the next agent
process with the same work dir re-adopts them, resends what was not acknowledged, and loses nothing."""

from __future__ import annotations

import signal
from collections import Counter

import psutil
import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.local_cluster import Daemon, LocalCluster, leftover_cgroups
from tests.e2e.harness import Recorder, agent_state, agents, eventually, framework, task

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]


def _daemon_for(cluster: LocalCluster, agent_id: str) -> Daemon:
    for d in cluster.agent_daemons:
        path = d.work_dir / "meta" / "agent_id"
        if d.alive and path.exists() and path.read_text().strip() == agent_id:
            return d
    raise AssertionError(f"no live daemon for agent {agent_id}")


def _task_pids(daemon: Daemon) -> set[int]:
    assert daemon.process is not None
    return {p.pid for p in psutil.Process(daemon.process.pid).children(recursive=False)}  # the task wrappers


async def _kill_agent(daemon: Daemon) -> None:
    daemon.signal(signal.SIGKILL)
    await daemon.wait(10)
    assert not daemon.alive


async def test_kill_9_in_the_middle_of_50_tasks_loses_nothing(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec, checkpoint=True, failover_timeout=300) as driver:
        offer = await rec.next_offer()
        daemon = _daemon_for(cluster, offer.agent_id)
        # 50 tasks: half end while the agent is down, half keep running until a file appears.
        go = daemon.work_dir / "go"
        tasks = []
        for i in range(50):
            cmd = f"sleep 2; exit {i % 5}" if i % 2 else f"while [ ! -e {go} ]; do sleep 0.1; done; exit 3"
            tasks.append(task(f"t{i}", cmd, offer.agent_id, cpus=0.02, mem=8))
        driver.accept([offer.id], tasks)
        await eventually(
            lambda: all(rec.latest(f"t{i}") and rec.latest(f"t{i}").state == tpb.TASK_RUNNING for i in range(50)),
            timeout=30,
            what="50 tasks RUNNING",
        )
        before = _task_pids(daemon)
        await _kill_agent(daemon)
        # The tasks outlive the agent process.
        assert all(psutil.pid_exists(p) for p in before)
        # The odd ones end while no agent watches them.
        await eventually(
            lambda: (
                sum(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in before)
                <= len(before) // 2 + 1
            ),
            timeout=20,
            what="the short tasks to end while the agent is down",
        )
        index = cluster.agent_daemons.index(daemon)
        new = cluster.add_agent(index)
        await eventually(lambda: _attached(cluster, offer.agent_id), timeout=30, what="the agent to re-attach")
        # Every odd task reports its real exit code, delivered once the new agent resends it.
        for i in range(1, 50, 2):
            s = await rec.wait_state(f"t{i}", {tpb.TASK_FINISHED, tpb.TASK_FAILED, tpb.TASK_LOST}, timeout=30)
            expected = i % 5
            assert s.state == (tpb.TASK_FINISHED if expected == 0 else tpb.TASK_FAILED), (i, s)
            assert s.exit_code == expected
        # The even ones are still running, re-adopted: let them finish.
        assert all(rec.latest(f"t{i}").state == tpb.TASK_RUNNING for i in range(0, 50, 2))
        go.touch()
        for i in range(0, 50, 2):
            s = await rec.wait_state(f"t{i}", {tpb.TASK_FAILED, tpb.TASK_FINISHED, tpb.TASK_LOST}, timeout=30)
            assert s.state == tpb.TASK_FAILED and s.exit_code == 3
        # Every terminal update arrived exactly once per task as a terminal state; nothing is pending.
        terminal = Counter(s.task_id for s in rec.statuses if s.state in (tpb.TASK_FAILED, tpb.TASK_FINISHED))
        assert set(terminal) == {f"t{i}" for i in range(50)}
        addr = (new.work_dir / "agent.addr").read_text().strip()
        await eventually(lambda: _settled(addr), timeout=30, what="every update acknowledged")
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in before)


async def _attached(cluster: LocalCluster, agent_id: str) -> bool:
    return any(a.agent_info.id == agent_id and a.active for a in await agents(cluster.master_address))


async def _settled(address: str) -> bool:
    state = await agent_state(address)
    return state.pending_updates == 0 and not state.tasks


async def test_tasks_of_frameworks_without_checkpoint_do_not_survive(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec, checkpoint=False) as driver:
        offer = await rec.next_offer()
        daemon = _daemon_for(cluster, offer.agent_id)
        driver.accept([offer.id], [task("plain", "sleep 300", offer.agent_id)])
        await rec.wait_state("plain", {tpb.TASK_RUNNING})
        pids = _task_pids(daemon)
        await _kill_agent(daemon)
        cluster.add_agent(cluster.agent_daemons.index(daemon))
        s = await rec.wait_state("plain", {tpb.TASK_LOST, tpb.TASK_GONE}, timeout=30)
        assert s.reason == tpb.TaskStatus.REASON_AGENT_RESTARTED
        await eventually(
            lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids),
            what="the orphan to be killed",
        )


async def test_a_reboot_is_detected_and_old_tasks_are_reported_lost(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec, checkpoint=True, failover_timeout=300) as driver:
        offer = await rec.next_offer()
        daemon = _daemon_for(cluster, offer.agent_id)
        driver.accept([offer.id], [task("old", "sleep 300", offer.agent_id)])
        await rec.wait_state("old", {tpb.TASK_RUNNING})
        pids = _task_pids(daemon)
        await _kill_agent(daemon)
        # Pretend the host rebooted: the boot id the agent recorded is no longer the host's.
        (daemon.work_dir / "meta" / "boot_id").write_text("a-previous-boot\n")
        cluster.add_agent(cluster.agent_daemons.index(daemon))
        s = await rec.wait_state("old", {tpb.TASK_LOST, tpb.TASK_GONE}, timeout=30)
        assert "rebooted" in s.message
        await eventually(
            lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids),
            what="the old task's process to be cleaned up",
        )
        assert not (daemon.work_dir / "meta" / "frameworks").exists() or not any(
            (daemon.work_dir / "meta" / "frameworks").rglob("task.pb")
        ), "the old task's checkpoint should be cleaned up once acknowledged"


async def test_sigterm_keeps_checkpointed_tasks_and_sigusr1_kills_everything(cluster: LocalCluster) -> None:
    rec = Recorder()
    async with framework(cluster.master_address, rec, checkpoint=True, failover_timeout=300) as driver:
        offer = await rec.next_offer()
        daemon = _daemon_for(cluster, offer.agent_id)
        driver.accept([offer.id], [task("keeper", "sleep 300", offer.agent_id)])
        await rec.wait_state("keeper", {tpb.TASK_RUNNING})
        pids = _task_pids(daemon)
        assert await daemon.stop() == 0  # SIGTERM: a restart-friendly stop
        assert any(psutil.pid_exists(p) for p in pids)
        new = cluster.add_agent(cluster.agent_daemons.index(daemon))
        await eventually(lambda: _attached(cluster, offer.agent_id), timeout=30)
        assert rec.latest("keeper").state == tpb.TASK_RUNNING
        assert await new.stop(sig=signal.SIGUSR1) == 0  # shut down for good
        s = await rec.wait_state("keeper", {tpb.TASK_KILLED}, timeout=30)
        assert s.state == tpb.TASK_KILLED
        assert leftover_cgroups(new.work_dir) == []
