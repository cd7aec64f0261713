"""An agent process that dies (kill -9) leaves the tasks of checkpointing frameworks running; the next agent
process with the same work dir re-adopts them, resends what was not acknowledged, and loses nothing."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.local_cluster import Daemon, LocalCluster, leftover_cgroups
from tests.e2e.harness import Recorder, agent_state, agents, eventually, framework, task
from tests.e2e.test_health_checks import _check

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


class DeliveryCounter(Recorder):
    """Counts every delivery of an update, resends included (the Recorder keeps each update once, by uuid)."""

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: Counter[bytes] = Counter()

    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        self.deliveries[status.uuid] += 1
        await super().status_update(driver, status)


async def test_kill_9_in_the_middle_of_50_tasks_loses_nothing(cluster: LocalCluster) -> None:
    rec = DeliveryCounter()
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
        addr = (new.work_dir / "agent.addr").read_text().strip()
        await eventually(lambda: _settled(addr), timeout=30, what="every update acknowledged")
        # What Mesos promises: each update is delivered at least once (a resend, after a slow acknowledgement or
        # the agent's restart, is the same update: same uuid), and the framework (here the Recorder) drops the
        # duplicates by uuid. So: every task ended exactly once, with one terminal update (one uuid), delivered
        # at least once; no update has two uuids for one state change; none is left pending at the agent.
        for i in range(50):
            distinct = [s for s in rec.statuses if s.task_id == f"t{i}"]
            ends = [s for s in distinct if s.state in TERMINAL]
            assert len(ends) == 1, (i, [tpb.TaskState.Name(s.state) for s in distinct])
            assert distinct[-1] is ends[0], f"t{i}: an update after the terminal one"
            assert rec.deliveries[ends[0].uuid] >= 1
            assert all(rec.deliveries[s.uuid] >= 1 for s in distinct)
            running = [s for s in distinct if s.state == tpb.TASK_RUNNING]
            assert len(running) == 1, f"t{i}: TASK_RUNNING reported {len(running)} times (new uuids)"
        assert sum(rec.deliveries.values()) >= len(rec.statuses)
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in before)
        # The checkpoint is empty once every task is over and acknowledged: no task, no framework left.
        meta = new.work_dir / "meta" / "frameworks"
        assert not meta.exists() or list(meta.rglob("*")) == [], list(meta.rglob("*"))


TERMINAL = {tpb.TASK_FAILED, tpb.TASK_FINISHED, tpb.TASK_KILLED, tpb.TASK_LOST, tpb.TASK_ERROR, tpb.TASK_GONE}


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
    """After a reboot the tasks are gone: reported lost, their processes cleaned up, their checkpoint removed once
    acknowledged. Their sandboxes are marked finished then, so the GC keeps them --gc-delay from then (even those
    of tasks silent for longer), and does not remove a user's logs at once."""
    rec, plain_rec = Recorder(), Recorder()
    async with (
        framework(cluster.master_address, rec, checkpoint=True, failover_timeout=300) as driver,
        framework(cluster.master_address, plain_rec, name="plain") as plain_driver,
    ):
        offer = await rec.next_offer()
        daemon = _daemon_for(cluster, offer.agent_id)
        driver.accept([offer.id], [task("old", "sleep 300", offer.agent_id)])
        plain_offer = await plain_rec.next_offer(agent_id=offer.agent_id)
        plain_driver.accept([plain_offer.id], [task("plain", "sleep 300", offer.agent_id)])
        await rec.wait_state("old", {tpb.TASK_RUNNING})
        await plain_rec.wait_state("plain", {tpb.TASK_RUNNING})
        pids = _task_pids(daemon)
        await _kill_agent(daemon)
        # Pretend the host rebooted: the boot id the agent recorded is no longer the host's.
        (daemon.work_dir / "meta" / "boot_id").write_text("a-previous-boot\n")
        # Tasks that wrote nothing for weeks; and a sandbox that really did finish weeks ago.
        boxes = {t: _run_dir(daemon, t) for t in ("old", "plain")}
        for box in boxes.values():
            _age(box, 14 * 86400)
        ancient = _fake_finished_sandbox(daemon, offer.agent_id, "ancient")
        index = cluster.agent_daemons.index(daemon)
        new = cluster.add_agent(index, extra_flags=["--gc-delay", "1d", "--gc-interval", "0.2"])
        s = await rec.wait_state("old", {tpb.TASK_LOST, tpb.TASK_GONE}, timeout=30)
        assert "rebooted" in s.message
        await plain_rec.wait_state("plain", {tpb.TASK_LOST, tpb.TASK_GONE}, timeout=30)
        await eventually(
            lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids),
            what="the old task's process to be cleaned up",
        )
        addr = (new.work_dir / "agent.addr").read_text().strip()
        await eventually(lambda: _settled(addr), timeout=30, what="every update acknowledged")
        meta = new.work_dir / "meta" / "frameworks"
        assert not meta.exists() or list(meta.rglob("*")) == [], "the old task's checkpoint is cleaned up"
        # The GC runs (the ancient sandbox goes), also after the lost task was forgotten (a second one goes)...
        await eventually(lambda: not ancient.exists(), timeout=20, what="the GC to remove a sandbox weeks old")
        later = _fake_finished_sandbox(daemon, offer.agent_id, "ancient-2")
        await eventually(lambda: not later.exists(), timeout=20, what="a GC pass after the task was forgotten")
        # ... but keeps the sandboxes of the tasks the reboot ended: finished now, not weeks ago.
        for t, box in boxes.items():
            assert (box / "stdout").exists(), f"the sandbox of {t} was collected at once"
            assert time.time() - box.stat().st_mtime < 120, f"the sandbox of {t} was not marked finished"


def _run_dir(daemon: Daemon, task_id: str) -> Path:
    (latest,) = daemon.work_dir.glob(f"agents/*/frameworks/*/executors/{task_id}/runs/latest")
    return latest.resolve()


def _age(run: Path, seconds: float) -> None:
    t = time.time() - seconds
    for p in [run, *run.iterdir()]:
        os.utime(p, (t, t), follow_symlinks=False)


def _fake_finished_sandbox(daemon: Daemon, agent_id: str, task_id: str) -> Path:
    run = daemon.work_dir / "agents" / agent_id / "frameworks" / "gone-fw" / "executors" / task_id / "runs" / "c0"
    run.mkdir(parents=True)
    (run / "stdout").write_text("bye\n")
    _age(run, 14 * 86400)
    return run


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


async def test_health_checks_go_on_after_the_agent_is_killed(cluster: LocalCluster) -> None:
    """A checkpointed task with a health check, re-adopted by a new agent process after a kill -9: the new agent
    keeps checking it and kills it once it goes unhealthy, as the first agent would have."""
    rec = Recorder()
    async with framework(cluster.master_address, rec, checkpoint=True, failover_timeout=300) as driver:
        offer = await rec.next_offer()
        daemon = _daemon_for(cluster, offer.agent_id)
        command = "touch healthy; while [ ! -e sick ]; do sleep 0.1; done; rm healthy; sleep 300"
        t = task("watched", command, offer.agent_id, grace=1)
        t.health_check.CopyFrom(_check(grace_period_seconds=1))  # every 0.2 s; 2 failures in a row kill it
        driver.accept([offer.id], [t])
        await eventually(
            lambda: any(s.healthy for s in rec.statuses if s.task_id == "watched" and s.HasField("healthy")),
            what="the task reported healthy",
        )
        sandbox = _run_dir(daemon, "watched")
        await _kill_agent(daemon)
        cluster.add_agent(cluster.agent_daemons.index(daemon))
        await eventually(lambda: _attached(cluster, offer.agent_id), timeout=30, what="the agent to re-attach")
        assert rec.latest("watched").state == tpb.TASK_RUNNING  # type: ignore[union-attr]
        (sandbox / "sick").touch()
        final = await rec.wait_state("watched", TERMINAL, timeout=30)
        assert final.state in (tpb.TASK_KILLED, tpb.TASK_FAILED), final
        assert final.reason == tpb.TaskStatus.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED, final
        assert "health check failed 2 times in a row" in final.message
        assert final.HasField("healthy") and not final.healthy
        # Health is reported on changes only: healthy once (not again by the new agent), then unhealthy.
        health = [
            s.healthy
            for s in rec.statuses
            if s.task_id == "watched" and s.HasField("healthy") and s.state == tpb.TASK_RUNNING
        ]
        assert health == [True, False], health
