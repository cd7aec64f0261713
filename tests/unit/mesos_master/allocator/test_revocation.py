"""Revocation decisions: the allocator is told which tasks run and picks the ones to kill (the master only kills).
Time is passed explicitly; nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mesos_master.allocator import (
    AllocatedTask,
    DRFSorter,
    HierarchicalAllocator,
    PrioritySorter,
    Quota,
    Revocation,
    Sorter,
)
from scheduler_sdk.resources import Resources

P = Resources.parse


class Cluster:
    """An allocator and the tasks the master would tell it about."""

    def __init__(self, sorter: Sorter | None = None, *, revocation: bool = True) -> None:
        self.alloc = HierarchicalAllocator(sorter=sorter, revocation=revocation)
        self.tasks: dict[str, AllocatedTask] = {}

    def agent(self, agent_id: str, res: str) -> None:
        self.alloc.add_agent(agent_id, P(res), {})

    def framework(self, fid: str, role: str, *, suppressed: bool = False) -> None:
        self.alloc.add_framework(fid, [role], {})
        if suppressed:
            self.alloc.suppress_offers(fid)

    def run(
        self, fid: str, agent_id: str, task_id: str, res: str, role: str, started: float, *, label: bool = False
    ) -> None:
        self.alloc.add_used(fid, agent_id, P(res), role=role)
        self.tasks[task_id] = AllocatedTask(fid, task_id, agent_id, role, P(res), started, non_revocable=label)

    def decide(self, now: float = 100.0) -> list[Revocation]:
        return self.alloc.revocations(now, list(self.tasks.values()))

    def killed(self, now: float = 100.0) -> list[str]:
        return [r.task_id for r in self.decide(now)]

    def killing(self, *task_ids: str) -> None:
        """Kills on their way, as the master reports them."""
        for t in task_ids:
            task = self.tasks[t]
            self.tasks[t] = AllocatedTask(
                task.framework_id,
                t,
                task.agent_id,
                task.role,
                task.resources,
                task.started_at,
                task.non_revocable,
                True,
            )

    def finished(self, task_id: str, now: float = 100.0) -> None:
        task = self.tasks.pop(task_id)
        self.alloc.recover_resources(task.framework_id, task.agent_id, task.resources, None, now, role=task.role)


def full_of_batch(sorter: Sorter | None) -> Cluster:
    """The audit's case: one agent cpus:2;mem:1024 full of batch tasks cpus:0.5;mem:256, prod guaranteed
    cpus:1;mem:64 and waiting."""
    c = Cluster(sorter)
    c.agent("a", "cpus:2;mem:1024")
    c.framework("batch", "batch", suppressed=True)
    for i in range(4):
        c.run("batch", "a", f"b{i}", "cpus:0.5;mem:256", "batch", started=float(i))
    c.alloc.update_quota("prod", Quota(P("cpus:1;mem:64")))
    c.framework("prod", "prod")
    return c


def never_read() -> Iterator[AllocatedTask]:
    raise AssertionError("the tasks were read although nobody starves")
    yield  # pragma: no cover


# ------------------------------------------------------------------------------------------- when
def test_revocation_is_off_by_default() -> None:
    c = Cluster(revocation=False)
    c.agent("a", "cpus:4;mem:4096")
    c.framework("b", "b")
    c.run("b", "a", "t", "cpus:4;mem:4096", "b", 0)
    c.framework("q", "q")
    assert c.alloc.revocations(0, never_read()) == []


def test_tasks_are_not_read_when_nobody_starves() -> None:
    c = Cluster()
    c.agent("a", "cpus:4;mem:4096")
    c.framework("b", "b", suppressed=True)
    c.run("b", "a", "t", "cpus:2;mem:2048", "b", 0)
    c.alloc.update_quota("q", Quota(P("cpus:2")))
    c.framework("q", "q")  # starved by its guarantee, but what is free covers it
    assert c.alloc.revocations(0, never_read()) == []


def test_revocation_needs_work_waiting() -> None:
    c = full_of_batch(PrioritySorter())
    c.alloc.suppress_offers("prod")
    assert c.killed() == []
    c.alloc.revive_offers("prod")
    assert c.killed() == ["b0", "b1"]
    c.alloc.deactivate_framework("prod")
    assert c.killed() == []


# ------------------------------------------------------------------------------------------- for a guarantee
@pytest.mark.parametrize("sorter", [PrioritySorter(), DRFSorter()], ids=["guarantee-only", "with-drf"])
def test_tasks_bigger_than_the_need_in_one_resource_are_revoked(sorter: Sorter) -> None:
    """Each batch task holds 256 MB where prod lacks 64: two of them still go, for the cpu prod lacks."""
    c = full_of_batch(sorter)
    decisions = c.decide()
    assert [(r.task_id, r.role, r.for_role) for r in decisions] == [("b0", "batch", "prod"), ("b1", "batch", "prod")]
    assert decisions[0] == Revocation("batch", "b0", "batch", "prod", P("cpus:0.5;mem:256"))


def test_victims_are_taken_oldest_first() -> None:
    c = Cluster(PrioritySorter())
    c.agent("a", "cpus:4;mem:4096")
    c.framework("b", "b", suppressed=True)
    for task_id, started in [("late", 30.0), ("first", 10.0), ("second", 20.0), ("last", 40.0)]:
        c.run("b", "a", task_id, "cpus:1;mem:1024", "b", started)
    c.alloc.update_quota("q", Quota(P("cpus:2")))
    c.framework("q", "q")
    assert c.killed() == ["first", "second"]


def test_never_below_the_victims_guarantee() -> None:
    c = Cluster(PrioritySorter())
    c.agent("a", "cpus:8;mem:8192")
    c.alloc.update_quota("b", Quota(P("cpus:6")))
    c.framework("b", "b", suppressed=True)
    for i in range(8):
        c.run("b", "a", f"t{i}", "cpus:1;mem:1024", "b", float(i))
    c.alloc.update_quota("q", Quota(P("cpus:4")))
    c.framework("q", "q")
    assert c.killed() == ["t0", "t1"]  # b keeps its 6 although q lacks 4


def test_a_task_that_would_take_the_victim_below_its_guarantee_is_skipped() -> None:
    c = Cluster(PrioritySorter())
    c.agent("a", "cpus:8;mem:8192")
    c.alloc.update_quota("b", Quota(P("cpus:5")))
    c.framework("b", "b", suppressed=True)
    c.run("b", "a", "big", "cpus:4;mem:1024", "b", 0)  # oldest, but b would fall to 4 cpus
    c.run("b", "a", "small", "cpus:1;mem:1024", "b", 1)
    c.run("b", "a", "rest", "cpus:3;mem:1024", "b", 2)
    c.alloc.update_quota("q", Quota(P("cpus:3")))
    c.framework("q", "q")
    assert c.killed() == ["small"]


def test_revocation_from_a_sibling_subtree_only() -> None:
    c = Cluster(PrioritySorter())
    c.agent("a", "cpus:4;mem:4096")
    c.framework("dev", "eng/dev", suppressed=True)
    c.framework("eng", "eng", suppressed=True)
    c.run("eng", "a", "eng-own", "cpus:2;mem:2048", "eng", 0)  # its parent's own tasks are not beside it
    c.run("dev", "a", "dev-1", "cpus:2;mem:2048", "eng/dev", 1)
    c.alloc.update_quota("eng/prod", Quota(P("cpus:2")))
    c.framework("prod", "eng/prod")
    assert [(r.task_id, r.for_role) for r in c.decide()] == [("dev-1", "eng/prod")]


# ------------------------------------------------------------------------------------------- for a fair share
def test_fair_share_with_drf_down_to_but_not_below_the_share() -> None:
    c = Cluster()
    for i in range(4):
        c.agent(f"a{i}", "cpus:4;mem:4096")
    c.framework("a", "a", suppressed=True)
    for i in range(8):
        c.run("a", f"a{i // 2}", f"t{i}", "cpus:2;mem:2048", "a", float(i))
    c.framework("b", "b")
    assert c.killed() == ["t0", "t1", "t2", "t3"]  # a down to exactly its half
    # weights 2:1: b's fair share is a third; a keeps 2/3 (10.67 cpus: 6 tasks of 2, since 5 would be below)
    c.alloc.update_weights({"a": 2})
    assert c.killed() == ["t0", "t1"]


def test_no_fair_share_revocation_with_priority() -> None:
    c = Cluster(PrioritySorter())
    c.agent("x", "cpus:4;mem:4096")
    c.framework("a", "a", suppressed=True)
    c.run("a", "x", "t", "cpus:4;mem:4096", "a", 0)
    c.framework("b", "b")
    assert c.killed() == []


# ------------------------------------------------------------------------------------------- the label
def test_non_revocable_label_is_honoured_only_within_the_guarantee() -> None:
    def cluster(victim_guarantee: str | None, labelled: tuple[str, ...]) -> Cluster:
        c = Cluster(PrioritySorter())
        c.agent("a", "cpus:4;mem:4096")
        if victim_guarantee:
            c.alloc.update_quota("b", Quota(P(victim_guarantee)))
        c.framework("b", "b", suppressed=True)
        for i in range(4):
            c.run("b", "a", f"t{i}", "cpus:1;mem:64", "b", float(i), label=f"t{i}" in labelled)
        c.alloc.update_quota("q", Quota(P("cpus:2")))
        c.framework("q", "q")
        return c

    # no guarantee: the label protects nothing
    assert cluster(None, ("t0", "t1")).killed() == ["t0", "t1"]
    # within b's guarantee (cpus:1): the oldest labelled task is spared; the next labelled one is beyond it
    assert cluster("cpus:1", ("t0", "t1")).killed() == ["t1", "t2"]
    # a guarantee that covers both labelled tasks spares both (b keeps 2 of its 4, above its guarantee)
    assert cluster("cpus:2", ("t0", "t1")).killed() == ["t2", "t3"]


# ------------------------------------------------------------------------------------------- kills in flight
def test_no_repeated_kills_while_earlier_ones_are_in_flight() -> None:
    c = full_of_batch(PrioritySorter())
    assert c.killed() == ["b0", "b1"]
    c.killing("b0", "b1")
    assert c.killed() == []  # their resources are on their way
    c.finished("b0")
    assert c.killed() == []  # one came back: free now, the other still on its way
    c.finished("b1")
    assert c.killed() == []  # both free: prod is offered them, nothing more to take
    # a kill the framework asked for counts too
    c2 = full_of_batch(PrioritySorter())
    c2.killing("b3")
    assert c2.killed() == ["b0"]
