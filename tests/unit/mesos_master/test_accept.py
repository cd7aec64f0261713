"""ACCEPT at scale (mesos_master/accept.py): many tasks over one agent's offers in one call, each checked against
what the tasks before it left, and the run_tasks authorisation asked once per user per accept (one audit line),
however many tasks it launches."""

from __future__ import annotations

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.allocator import HierarchicalAllocator
from mesos_master.cluster import Master
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.acls import Authorizer, Decision
from scheduler_sdk.security.certs import Principal
from tests.unit.mesos_master.test_cluster import Clock, World, messages, task, updates

M = agent_pb2.MasterMessage


class CountingAuthorizer(Authorizer):
    """The default ACLs (root may not run tasks), counting what is asked."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.asked: list[tuple[str, str]] = []

    def authorize(
        self, principal: Principal | None, action: str, obj: str = "", *, owner: Principal | None = None
    ) -> Decision:
        self.asked.append((action, obj))
        return super().authorize(principal, action, obj, owner=owner)


def secure_world() -> tuple[World, CountingAuthorizer]:
    w = World()
    authorizer = CountingAuthorizer()
    w.master = Master("M", HierarchicalAllocator(allocation_interval=1.0), clock=Clock(), authorizer=authorizer)
    return w, authorizer


def as_user(info: tpb.TaskInfo, user: str) -> tpb.TaskInfo:
    info.command.user = user
    return info


def test_run_tasks_is_asked_once_per_user_per_accept_and_a_denial_drops_only_its_tasks() -> None:
    w, authorizer = secure_world()
    aid = w.register("h1", "cpus:16;mem:16384")
    fid = w.subscribe("fw", user="nobody", principal="framework/fw")
    [offer] = w.offers()[fid]
    infos = [task(f"t{i}", "cpus:1;mem:64") for i in range(6)]
    infos[2] = as_user(infos[2], "root")
    infos[4] = as_user(infos[4], "root")
    authorizer.asked.clear()
    w.accept(fid, [offer.id], infos, refuse=0)
    assert sorted(authorizer.asked) == [("run_tasks", "nobody"), ("run_tasks", "root")]
    d = w.drain()
    [run] = messages(d, aid, M.RUN_TASKS)
    assert [r.task.task_id for r in run.run_tasks.tasks] == ["t0", "t1", "t3", "t5"]
    errors = {s.task_id: s for s in updates(d, fid)}
    assert sorted(errors) == ["t2", "t4"]
    unauthorized = (tpb.TASK_ERROR, tpb.TaskStatus.REASON_TASK_UNAUTHORIZED)
    assert all((s.state, s.reason) == unauthorized for s in errors.values())
    # Every accept asks again: a decision is not kept past its call (the ACLs may change between calls).
    w.clock.now += 1.0
    [offer] = w.offers()[fid]
    authorizer.asked.clear()
    w.accept(fid, [offer.id], [task("t9", "cpus:1;mem:64")])
    assert authorizer.asked == [("run_tasks", "nobody")]


def test_many_tasks_in_one_accept_use_the_offers_in_order_and_the_rest_returns() -> None:
    w = World()
    aid = w.register("h1", "cpus:4;mem:1024;ports:[31000-31009]")
    fid = w.subscribe("fw")
    [offer] = w.offers()[fid]
    infos = [task(f"t{i}", "cpus:0.5;mem:100") for i in range(9)]  # the ninth finds no cpus left
    infos[3].resources.extend(Resources.ports((31005, 31005)).to_proto())
    w.accept(fid, [offer.id], infos, refuse=0)
    d = w.drain()
    [run] = messages(d, aid, M.RUN_TASKS)
    assert [r.task.task_id for r in run.run_tasks.tasks] == [f"t{i}" for i in range(8)]
    assert all(r.task.agent_id == aid for r in run.run_tasks.tasks)
    [dropped] = updates(d, fid)
    assert (dropped.task_id, dropped.state) == ("t8", tpb.TASK_ERROR)
    assert "uses more resources than offered" in dropped.message
    # What the eight left (no cpus; 224 MB; nine ports) is offered again, to the framework that declined nothing.
    w.clock.now += 1.0
    [again] = w.offers()[fid]
    assert Resources.from_proto(again.resources) == Resources.parse("mem:224;ports:[31000-31004,31006-31009]")
