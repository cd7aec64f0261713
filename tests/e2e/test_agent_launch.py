"""The agent's launch path with real containers (cgroups) and an in-process master stand-in: a KILL that arrives
while a launch is under way, and the checkpoint of a framework once its last task is over."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.agent import Agent
from mesos_agent.containerizer import Container, Containerizer, LaunchSpec
from scheduler_sdk.resources import Resources
from tests.e2e.harness import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
S = tpb.TaskStatus
M = agent_pb2.MasterMessage
TERMINAL = {tpb.TASK_KILLED, tpb.TASK_FAILED, tpb.TASK_FINISHED, tpb.TASK_LOST, tpb.TASK_ERROR}


class Master:
    """Takes the agent's updates, acknowledges each one turn later (as the framework would, through the master)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.statuses: dict[str, list[tpb.TaskStatus]] = {}

    def send(self, message: agent_pb2.AgentMessage) -> None:
        acks = []
        for u in message.status_updates.updates:
            seen = self.statuses.setdefault(u.status.task_id, [])
            if all(s.uuid != u.status.uuid for s in seen):
                seen.append(u.status)
            acks.append(tpb.Acknowledgement(framework_id=u.framework_id, task_id=u.status.task_id, uuid=u.status.uuid))
        asyncio.get_running_loop().call_soon(
            self.agent.on_master_message,
            M(type=M.ACKNOWLEDGE, acknowledge=M.Acknowledge(acknowledgements=acks)),
        )

    def states(self, task_id: str) -> list[int]:
        return [s.state for s in self.statuses.get(task_id, [])]

    def final(self, task_id: str) -> tpb.TaskStatus | None:
        seen = self.statuses.get(task_id, [])
        return seen[-1] if seen and seen[-1].state in TERMINAL else None


@pytest.fixture
async def containerizer(tmp_path: Path) -> AsyncIterator[Containerizer]:
    czr = Containerizer(f"aiomesos-test/{uuid.uuid4().hex[:12]}", runtime_dir=tmp_path / "runtime")
    if czr.cgroups_version is None:
        await czr.shutdown()
        pytest.skip(f"needs cgroups: {czr.warning}")
    try:
        yield czr
    finally:
        await czr.shutdown()


def _framework(fid: str, *, killing: bool = False, checkpoint: bool = False) -> rpb.FrameworkInfo:
    info = rpb.FrameworkInfo(id=fid, name=fid, checkpoint=checkpoint)
    if killing:
        info.capabilities.add(type=rpb.FrameworkInfo.Capability.TASK_KILLING_STATE)
    return info


def _task(task_id: str, command: str = "sleep 60") -> tpb.TaskInfo:
    return tpb.TaskInfo(
        task_id=task_id,
        name=task_id,
        resources=Resources.of(cpus=0.1, mem=32).to_proto(),
        command=rpb.CommandInfo(shell=True, value=command),
    )


async def _agent(tmp_path: Path, czr: Containerizer, tg: asyncio.TaskGroup) -> tuple[Agent, Master]:
    agent = Agent(tmp_path, rpb.AgentInfo(hostname="test"), czr, spawn=tg.create_task)
    master = Master(agent)
    agent.send = master.send
    agent.on_registered("S1")
    return agent, master


async def test_a_kill_during_the_launch_kills_the_task_as_soon_as_it_exists(
    tmp_path: Path, containerizer: Containerizer
) -> None:
    launching: list[str] = []
    go_on = asyncio.Event()
    started: list[Container] = []
    real_launch = containerizer.launch

    async def held_launch(spec: LaunchSpec) -> Container:
        launching.append(spec.container_id)
        await go_on.wait()  # the launch is under way (the containerizer's launch awaits) when the KILL comes
        container = await real_launch(spec)
        started.append(container)
        return container

    containerizer.launch = held_launch  # type: ignore[method-assign]
    capable, plain = _framework("with-cap", killing=True), _framework("without")
    async with asyncio.TaskGroup() as tg:
        agent, master = await _agent(tmp_path, containerizer, tg)
        agent.run_task(capable, _task("a"))
        agent.run_task(plain, _task("b"))
        await eventually(lambda: len(launching) == 2, what="both launches under way")
        assert master.states("a") == [tpb.TASK_STARTING] and master.states("b") == [tpb.TASK_STARTING]
        agent.on_master_message(
            M(
                type=M.KILL_TASKS,
                kill_tasks=M.KillTasks(
                    tasks=[
                        M.KillTask(framework_id="with-cap", task_id="a"),
                        M.KillTask(framework_id="without", task_id="b"),
                    ]
                ),
            )
        )
        await eventually(lambda: tpb.TASK_KILLING in master.states("a"), what="TASK_KILLING at once")
        go_on.set()
        a = await eventually(lambda: master.final("a"), what="a killed")
        b = await eventually(lambda: master.final("b"), what="b killed")
        await eventually(lambda: not agent.tasks, what="every update acknowledged")
        agent.close()
    assert master.states("a") == [tpb.TASK_STARTING, tpb.TASK_KILLING, tpb.TASK_KILLED]
    assert master.states("b") == [tpb.TASK_STARTING, tpb.TASK_KILLED]
    for s in (a, b):
        assert s.reason == S.REASON_TASK_KILLED_DURING_LAUNCH, s
    # The containers did start, and were killed right after: nothing of them is left.
    assert len(started) == 2 and all(c.done for c in started)
    assert not any(p.exists() for c in started for p in c.cgroup_paths)
    assert not any(os.path.exists(f"/proc/{c.pid}") for c in started)


async def test_a_frameworks_checkpoint_goes_with_its_last_task(tmp_path: Path, containerizer: Containerizer) -> None:
    fw = _framework("ckpt", checkpoint=True)
    frameworks = tmp_path / "meta" / "frameworks"
    async with asyncio.TaskGroup() as tg:
        agent, master = await _agent(tmp_path, containerizer, tg)
        agent.run_task(fw, _task("first", "exit 0"))
        agent.run_task(fw, _task("second", "sleep 60"))
        await eventually(lambda: master.final("first"), what="the first task over")
        await eventually(lambda: tpb.TASK_RUNNING in master.states("second"), what="the second running")
        await eventually(lambda: ("ckpt", "first") not in agent.tasks, what="the first acknowledged")
        assert (frameworks / "ckpt" / "framework.pb").exists(), "removed while a task of it is still checkpointed"
        agent.kill_task("ckpt", "second", None)
        await eventually(lambda: not agent.tasks, what="the second killed and acknowledged")
        agent.close()
    assert master.final("second").state == tpb.TASK_KILLED  # type: ignore[union-attr]
    assert not frameworks.exists() or list(frameworks.iterdir()) == [], list(frameworks.rglob("*"))
