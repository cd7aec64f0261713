"""`aiomesos events`: the lines it prints for each kind of event, the snapshot's summary, and its JSON lines."""

from __future__ import annotations

import json

import pytest

from aiomesos.v1 import events_pb2 as epb
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.cli.events import event_json, event_line, snapshot_summary
from scheduler_sdk.resources import Resources

E = epb.OperatorEvent
R = Resources.parse


def test_snapshot_summary_counts_what_the_cluster_holds() -> None:
    snapshot = epb.EventSnapshot(
        master_id="M",
        agents=[epb.EventAgent(active=True), epb.EventAgent(active=False)],
        frameworks=[epb.EventFramework(active=True), epb.EventFramework(active=False)],
        tasks=[epb.EventTask(state=state) for state in (tpb.TASK_RUNNING, tpb.TASK_RUNNING, tpb.TASK_FINISHED)],
        quotas=[epb.EventQuota(role="eng")],
        weights={"eng": 2.0},
    )
    assert snapshot_summary(snapshot) == (
        "master M; 2 agents (1 active); 1 frameworks (1 completed); tasks: 2 TASK_RUNNING; 1 ended; "
        "quota: eng; weights: eng=2"
    )


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (
            E(
                type=E.AGENT_ADDED,
                agent=epb.EventAgent(
                    agent_info=rpb.AgentInfo(id="S1", hostname="h1"), active=True, total=R("cpus:2").to_proto()
                ),
            ),
            "AGENT_ADDED        agent S1 (h1) cpus:2",
        ),
        (
            E(type=E.AGENT_UNREACHABLE, agent=epb.EventAgent(agent_info=rpb.AgentInfo(id="S1")), message="quiet"),
            "AGENT_UNREACHABLE  agent S1 (): quiet",
        ),
        (
            E(type=E.AGENT_DRAINING, agent=epb.EventAgent(drain=epb.EventDrain(drained=True))),
            "AGENT_DRAINING     agent  () drained",
        ),
        (
            E(
                type=E.FRAMEWORK_UPDATED,
                framework=epb.EventFramework(
                    framework_info=rpb.FrameworkInfo(id="F1", name="fw", roles=["eng"]),
                    active=True,
                    suppressed_roles=["eng"],
                ),
            ),
            "FRAMEWORK_UPDATED  framework F1 (fw) roles eng disconnected suppressed:eng",
        ),
        (
            E(
                type=E.TASK_UPDATED,
                task_update=epb.EventTaskUpdate(
                    task_id="t1",
                    framework_id="F1",
                    agent_id="S1",
                    state=tpb.TASK_FAILED,
                    status=tpb.TaskStatus(reason=tpb.TaskStatus.REASON_CONTAINER_LIMITATION_MEMORY, message="oom"),
                ),
            ),
            "TASK_UPDATED       task t1 of F1 on S1 TASK_FAILED REASON_CONTAINER_LIMITATION_MEMORY: oom",
        ),
        (
            E(type=E.OFFERS_MADE, offers=epb.EventOffers(framework_id="F1", offers=2, agents=1)),
            "OFFERS_MADE        2 offers to F1 on 1 agents: -",
        ),
        (
            E(type=E.QUOTA_UPDATED, quota=epb.EventQuota(role="eng", limit=rpb.ResourceList(resources=[]))),
            "QUOTA_UPDATED      role eng: guarantee -, limit -",
        ),
        (
            E(type=E.QUOTA_UPDATED, quota=epb.EventQuota(role="eng", removed=True)),
            "QUOTA_UPDATED      role eng: quota removed",
        ),
        (E(type=E.WEIGHTS_UPDATED, weights={"b": 1, "a": 2.5}), "WEIGHTS_UPDATED    a=2.5, b=1"),
        (E(type=99), "unknown (99)"),  # a newer master's kind: named, never a traceback
    ],
)
def test_each_event_is_one_readable_line(event: epb.OperatorEvent, text: str) -> None:
    line = event_line(event)
    assert "\n" not in line
    assert line[13:] == text.rstrip()


def test_json_lines_use_the_proto_field_names() -> None:
    event = E(type=E.TASK_UPDATED, time=12.5, task_update=epb.EventTaskUpdate(task_id="t1", state=tpb.TASK_RUNNING))
    assert json.loads(event_json(event)) == {
        "type": "TASK_UPDATED",
        "time": 12.5,
        "task_update": {"task_id": "t1", "state": "TASK_RUNNING"},
    }
