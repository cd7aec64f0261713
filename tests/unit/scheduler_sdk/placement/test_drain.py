"""PlacementScheduler and agent drain: a draining agent gets no new tasks, ours there move off by themselves."""

from __future__ import annotations

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.placement.model import TaskRequest
from tests.unit.scheduler_sdk.placement.test_service import cmd, make, offer, status

KILLED = tpb.TASK_KILLED
DRAINING = tpb.TaskStatus.REASON_AGENT_DRAINING


async def test_a_draining_agent_gets_no_new_tasks_and_ours_move_elsewhere() -> None:
    updates: list[tuple[str, int]] = []
    s, fake, d, _ = make(on_update=lambda task, st: updates.append((st.task_id, st.state)))
    await s.offers(d, [offer("o1", "a1", "h1", cpus=2)])
    s.submit(cmd("web-1", cpus=1), cmd("web-2", cpus=1))
    s.schedule_once(d)
    assert fake.take() == [("accept", ["o1"], ["web-1", "web-2"], 5.0)]
    for task_id in ("web-1", "web-2"):
        await s.status_update(d, status(task_id, tpb.TASK_RUNNING, "a1"))
    await s.offers(d, [offer("o2", "a1", "h1", cpus=1)])
    await s.agent_draining(d, "a1", 2_000.0)
    # its lease goes back, our tasks there are killed, to be moved
    assert fake.take() == [("decline", ["o2"], 5.0), ("kill", "web-1", "a1"), ("kill", "web-2", "a1")]
    [host] = s.hosts()
    assert host.disabled and host.hostname == "h1"
    # the kill of web-1 is reported: queued again (on_update does not hear of it: the task is not over)
    kill = status("web-1", KILLED, "a1")
    kill.reason = DRAINING
    await s.status_update(d, kill)
    assert s.pending() == 1 and "web-1" in s.tasks and s.metrics.drain_migrations == 1
    # web-2 ended by itself first: that is its end
    await s.status_update(d, status("web-2", tpb.TASK_FINISHED, "a1"))
    assert ("web-1", KILLED) not in updates and ("web-2", tpb.TASK_FINISHED) in updates
    await s.offers(d, [offer("o3", "a2", "h2", cpus=2)])
    s.schedule_once(d)
    assert fake.take() == [("accept", ["o3"], ["web-1"], 5.0)]
    assert s._where["web-1"] == "a2"


async def test_a_kill_at_the_deadline_moves_a_task_we_did_not_kill() -> None:
    s, fake, d, _ = make(migrate_on_drain=True)
    await s.offers(d, [offer("o1", "a1", "h1", cpus=1)])
    s.submit(cmd("job", cpus=1))
    s.schedule_once(d)
    fake.take()
    await s.status_update(d, status("job", tpb.TASK_RUNNING, "a1"))
    kill = status("job", KILLED, "a1")  # killed by the master (we never heard of the drain: disconnected)
    kill.reason = DRAINING
    await s.status_update(d, kill)
    assert s.pending() == 1


async def test_without_migration_a_draining_agent_is_only_left_alone() -> None:
    updates: list[tuple[str, int]] = []
    s, fake, d, _ = make(migrate_on_drain=False, on_update=lambda task, st: updates.append((st.task_id, st.state)))
    await s.offers(d, [offer("o1", "a1", "h1", cpus=1)])
    s.submit(cmd("job", cpus=1))
    s.schedule_once(d)
    fake.take()
    await s.status_update(d, status("job", tpb.TASK_RUNNING, "a1"))
    await s.agent_draining(d, "a1", None)
    assert fake.take() == []
    kill = status("job", KILLED, "a1")
    kill.reason = DRAINING
    await s.status_update(d, kill)
    assert s.pending() == 0 and updates[-1] == ("job", KILLED)


async def test_an_offer_from_a_drained_agent_means_it_is_back() -> None:
    s, fake, d, _ = make()
    await s.offers(d, [offer("o1", "a1", "h1", cpus=1)])
    await s.agent_draining(d, "a1", None)
    s.submit(TaskRequest("t", cpus=1, payload="true"))
    await s.offers(d, [offer("o2", "a1", "h1", cpus=1)])  # reactivated: the master offers it again
    assert "a1" not in s.draining
    s.schedule_once(d)
    assert ("accept", ["o2"], ["t"], 5.0) in fake.take()


async def test_a_task_the_framework_kills_itself_is_not_moved() -> None:
    s, _fake, d, _ = make()
    await s.offers(d, [offer("o1", "a1", "h1", cpus=1)])
    s.submit(cmd("job", cpus=1))
    s.schedule_once(d)
    await s.status_update(d, status("job", tpb.TASK_RUNNING, "a1"))
    await s.agent_draining(d, "a1", 5.0)
    s.kill("job")
    await s.status_update(d, status("job", KILLED, "a1"))
    assert s.pending() == 0 and "job" not in s.tasks
