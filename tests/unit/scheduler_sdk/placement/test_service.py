"""PlacementScheduler as pure logic: a fake driver records every call, a fake clock drives time. Each test states
the calls and figures expected, worked out by hand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.placement import (
    AttributeValue,
    BalancedByAttribute,
    BinPacking,
    Custom,
    PlacementEngine,
    RunningTask,
    TaskQueue,
    TaskRequest,
    UniqueByAttribute,
)
from scheduler_sdk.placement.model import SchedulingResult
from scheduler_sdk.placement.service import PlacementScheduler, run_framework
from scheduler_sdk.resources import Resources


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeDriver:
    """Records the calls PlacementScheduler makes, as plain tuples."""

    def __init__(self, subscribed: bool = True) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.subscribed = asyncio.Event()
        if subscribed:
            self.subscribed.set()

    def accept(self, offer_ids: list[str], tasks: list[tpb.TaskInfo], refuse_seconds: float | None = None) -> None:
        self.calls.append(("accept", list(offer_ids), [t.task_id for t in tasks], refuse_seconds))

    def decline(self, offer_ids: list[str], refuse_seconds: float | None = None) -> None:
        self.calls.append(("decline", sorted(offer_ids), refuse_seconds))

    def revive(self, roles: tuple[str, ...] = ()) -> None:
        self.calls.append(("revive",))

    def suppress(self, roles: tuple[str, ...] = ()) -> None:
        self.calls.append(("suppress",))

    def kill(self, task_id: str, agent_id: str = "", grace_period: float | None = None) -> None:
        self.calls.append(("kill", task_id, agent_id))

    def reconcile(self, tasks: tuple[tuple[str, str], ...] = ()) -> None:
        self.calls.append(("reconcile",))

    def take(self) -> list[tuple[Any, ...]]:
        calls, self.calls = self.calls, []
        return calls


def offer(
    oid: str, agent: str, host: str, cpus: float = 0, mem: float = 0, ports: tuple[int, int] | None = None, **attrs: str
) -> spb.Offer:
    res = Resources.from_scalars({k: v for k, v in (("cpus", cpus), ("mem", mem)) if v})
    if ports is not None:
        res = res + Resources.ports(ports)
    return spb.Offer(
        id=oid,
        agent_id=agent,
        hostname=host,
        resources=res.to_proto(),
        attributes=[rpb.Attribute(name=k, type=rpb.Value.TEXT, text=rpb.Value.Text(value=v)) for k, v in attrs.items()],
    )


def status(task_id: str, state: int, agent: str = "") -> tpb.TaskStatus:
    return tpb.TaskStatus(task_id=task_id, state=state, agent_id=agent)  # type: ignore[arg-type]


def make(
    engine: Any = None, queue: Any = None, **kw: Any
) -> tuple[PlacementScheduler, FakeDriver, SchedulerDriver, Clock]:
    clock = Clock()
    fake = FakeDriver()
    s = PlacementScheduler(engine or PlacementEngine(BinPacking("cpus")), queue, clock=clock, **kw)
    return s, fake, cast(SchedulerDriver, fake), clock


async def until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll a condition with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {what}")
        await asyncio.sleep(0.005)


def cmd(task_id: str, **kw: Any) -> TaskRequest:
    return TaskRequest(task_id, payload="true", **kw)


# ---------------------------------------------------------------------- hosts without offers (item 1)
async def test_a_host_with_no_offer_left_still_counts_its_running_co_tasks_for_a_zone_constraint() -> None:
    s, fake, d, _ = make()
    unique_zone = (UniqueByAttribute("zone"),)
    await s.offers(
        d,
        [
            offer("o1", "a1", "h1", cpus=1, zone="a"),
            offer("o2", "a2", "h2", cpus=1, zone="a"),
            offer("o3", "a3", "h3", cpus=1, zone="b"),
        ],
    )
    s.submit(cmd("db-1", cpus=1, group="db", hard_constraints=unique_zone))
    s.schedule_once(d)
    # h1 first by name; nothing else is queued, so the other leases are of no use: declined with the filter.
    assert fake.take() == [("accept", ["o1"], ["db-1"], 5.0), ("decline", ["o2", "o3"], 30.0)]
    await s.status_update(d, status("db-1", tpb.TASK_RUNNING, "a1"))
    # h1 has nothing left to offer; the master offers h2 and h3 again after the revive of the next submit.
    s.submit(cmd("db-2", cpus=1, group="db", hard_constraints=unique_zone))
    assert fake.take() == [("revive",)]
    await s.offers(d, [offer("o4", "a2", "h2", cpus=1, zone="a"), offer("o5", "a3", "h3", cpus=1, zone="b")])
    assert [(h.hostname, [o.offer_id for o in h.offers], [t.id for t in h.running]) for h in s.hosts()] == [
        ("h1", [], ["db-1"]),
        ("h2", ["o4"], []),
        ("h3", ["o5"], []),
    ]
    s.schedule_once(d)
    # zone a holds db-1 (on h1, which has no offer): db-2 goes to zone b
    assert fake.take() == [("accept", ["o5"], ["db-2"], 5.0), ("decline", ["o4"], 30.0)]


async def test_a_host_with_no_offer_counts_for_balance() -> None:
    s, fake, d, _ = make()
    balanced = (BalancedByAttribute("zone"),)
    await s.offers(d, [offer("o1", "a1", "h1", cpus=2, zone="a"), offer("o2", "a2", "h2", cpus=2, zone="b")])
    s.submit(cmd("w-1", cpus=2, group="w", hard_constraints=balanced))
    s.submit(cmd("w-2", cpus=1, group="w", hard_constraints=balanced))
    s.schedule_once(d)
    assert fake.take() == [("accept", ["o1"], ["w-1"], 0), ("accept", ["o2"], ["w-2"], 5.0)]
    await s.status_update(d, status("w-1", tpb.TASK_RUNNING, "a1"))
    await s.status_update(d, status("w-2", tpb.TASK_RUNNING, "a2"))
    # h2 has a core left; h1 none. Zone a holds one task, zone b one: w-3 may go to either, h2 takes it...
    await s.offers(d, [offer("o3", "a2", "h2", cpus=1, zone="b")])
    s.submit(cmd("w-3", cpus=1, group="w", hard_constraints=balanced))
    s.schedule_once(d)
    assert fake.take() == [("accept", ["o3"], ["w-3"], 5.0)]
    await s.status_update(d, status("w-3", tpb.TASK_RUNNING, "a2"))
    # ...and now zone b holds two, zone a one (on h1, no offer): w-4 must not go to zone b, so it waits (h3's
    # lease is kept: w-4 could use it once the balance allows).
    await s.offers(d, [offer("o4", "a3", "h3", cpus=4, zone="b")])
    s.submit(cmd("w-4", cpus=1, group="w", hard_constraints=balanced))
    s.schedule_once(d)
    assert fake.take() == []
    assert [(f.hostname, f.kind, f.name) for f in s.last_failures["w-4"]] == [
        ("h1", "resource", "offers"),
        ("h2", "resource", "offers"),
        ("h3", "constraint", "balanced(zone)"),
    ]


async def test_hosts_carry_the_agents_capacity_seen_in_offers_or_given() -> None:
    s, fake, d, _ = make()
    await s.offers(d, [offer("o1", "a1", "h1", cpus=4, mem=100, ports=(31000, 31009))])
    s.submit(cmd("t", cpus=1, mem=10, ports=2), cmd("u", cpus=8))
    s.schedule_once(d)
    assert fake.take() == [("accept", ["o1"], ["t"], 0)]
    # the remainder comes back: 3 cpus offered + 1 used by t = 4, the most seen
    await s.offers(d, [offer("o2", "a1", "h1", cpus=3, mem=90, ports=(31002, 31009))])
    [h] = s.hosts()
    assert (h.total_cpus, h.total_mem, h.total_disk, h.total_scalars) == (4.0, 100.0, None, None)
    assert s.totals() == {"cpus": 4.0, "mem": 100.0, "ports": 10.0}
    s.set_capacity("a1", {"cpus": 16, "mem": 1000, "gpus": 2})
    [h] = s.hosts()
    assert (h.total_cpus, h.total_mem, h.total_scalars) == (16.0, 1000.0, {"gpus": 2.0})
    assert s.totals() == {"cpus": 16.0, "mem": 1000.0, "gpus": 2.0}
    with pytest.raises(ValueError, match="agent a1: capacity of cpus must be a number >= 0, not -1"):
        s.set_capacity("a1", {"cpus": -1})
    # given before the agent's first offer: taken when it comes, and only then counted
    s.set_capacity("a2", {"cpus": 8})
    assert s.totals() == {"cpus": 16.0, "mem": 1000.0, "gpus": 2.0}
    await s.offers(d, [offer("o3", "a2", "h2", cpus=1)])
    assert s.totals() == {"cpus": 24.0, "mem": 1000.0, "gpus": 2.0}
    assert [h.total_cpus for h in s.hosts()] == [16.0, 8.0]


# ---------------------------------------------------------------------- one run failing (item 3)
async def test_two_agents_with_one_hostname_make_one_host_the_older_offers_go_back() -> None:
    s, fake, d, clock = make()
    await s.offers(d, [offer("o1", "old", "h1", cpus=2)])
    s.submit(cmd("g-1", cpus=1, group="g"))
    s.schedule_once(d)
    await s.status_update(d, status("g-1", tpb.TASK_RUNNING, "old"))
    fake.take()
    await s.offers(d, [offer("o2", "old", "h1", cpus=1)])
    clock.now += 1
    # the agent came back under a new id while o2 of the old one is held
    await s.offers(d, [offer("o3", "new", "h1", cpus=2), offer("o4", "a2", "h2", cpus=2)])
    assert fake.take() == [("decline", ["o2"], 5.0)]
    [h1, _] = s.hosts()
    assert (h1.hostname, h1.agent_id, [o.offer_id for o in h1.offers], [t.id for t in h1.running]) == (
        "h1",
        "new",
        ["o3"],
        ["g-1"],
    )
    s.submit(cmd("g-2", cpus=1, group="g", hard_constraints=(UniqueByAttribute("hostname"),)))
    result = s.schedule_once(d)
    assert result is not None and [(a.task.id, a.hostname) for a in result.assignments] == [("g-2", "h2")]
    assert fake.take() == [("accept", ["o4"], ["g-2"], 5.0), ("decline", ["o3"], 30.0)]
    assert s.metrics.failed_runs == 0
    # once its last task has ended, the old registration is forgotten
    await s.status_update(d, status("g-1", tpb.TASK_LOST, "old"))
    assert sorted(s.agents) == ["a2", "new"]


async def test_a_run_that_raises_is_logged_and_counted_and_the_loop_goes_on() -> None:
    calls = {"n": 0}

    def flaky(task: TaskRequest, host: Any, ctx: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("plugin broke")
        return True

    s, fake, d, _ = make(loop_interval=0.001, retry_interval=0.01)
    s.clock = time.monotonic
    await s.offers(d, [offer("o1", "a1", "h1", cpus=1)])
    s.submit(cmd("t", cpus=1, hard_constraints=(Custom("flaky", flaky),)))
    with capture_logs() as logs:
        loop = asyncio.create_task(s.run(d))
        try:
            await until(lambda: any(c[0] == "accept" for c in fake.calls), what="the retry launches t")
        finally:
            loop.cancel()
    assert (s.metrics.failed_runs, s.metrics.last_error, s.metrics.runs) == (1, "RuntimeError: plugin broke", 1)
    assert fake.calls == [("accept", ["o1"], ["t"], 5.0)]
    [failed] = [e for e in logs if e["event"] == "scheduling run failed"]
    assert (failed["log_level"], failed["error"], failed["queued"]) == ("error", "RuntimeError: plugin broke", 1)


async def test_run_framework_raises_what_killed_the_scheduling_loop() -> None:
    class Broken(PlacementScheduler):
        async def run(self, driver: SchedulerDriver) -> None:
            raise RuntimeError("loop died")

    scheduler = Broken(PlacementEngine())
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="loop died"):
        await run_framework("127.0.0.1:1", rpb.FrameworkInfo(name="x"), scheduler, timeout=30)
    assert time.monotonic() - started < 15, "raised only when the timeout ended the run"


# ---------------------------------------------------------------------- DRF with the cluster's totals (item 4)
def drf_tasks() -> list[TaskRequest]:
    a = [cmd(f"a{i}", cpus=1, mem=4, bucket="A") for i in range(1, 6)]
    b = [cmd(f"b{i}", cpus=3, mem=1, bucket="B") for i in range(1, 6)]
    return a + b


async def test_the_drf_paper_example_is_served_in_true_drf_order() -> None:
    s, fake, d, _ = make(queue=TaskQueue())
    await s.offers(d, [offer("o1", "a1", "h1", cpus=9, mem=18)])
    s.submit(*drf_tasks())
    s.schedule_once(d)
    # True DRF: a1, b1, a2, b2, a3 fill the 9 cpus (relative shares would give a1, b1, b2, a2, a3).
    assert fake.take() == [("accept", ["o1"], ["a1", "b1", "a2", "b2", "a3"], 0)]
    assert s.queue.total == {"cpus": 9.0, "mem": 18.0}  # type: ignore[attr-defined]


async def test_a_task_that_is_not_placed_does_not_count_for_its_buckets_share() -> None:
    s, fake, d, _ = make(queue=TaskQueue())
    await s.offers(d, [offer("o1", "a1", "h1", cpus=6)])
    gpu_only = (AttributeValue("pool", equals="gpu"),)
    s.submit(cmd("a1", cpus=1, bucket="A", hard_constraints=gpu_only))
    s.submit(*(cmd(f"a{i}", cpus=1, bucket="A") for i in (2, 3, 4)))
    s.submit(*(cmd(f"b{i}", cpus=2, bucket="B") for i in (1, 2, 3)))
    s.schedule_once(d)
    # a1 fails, so A's share stays 0: a2 (older head than b1), b1 (B at 0 < 1/6), a3 (1/6 < 2/6), then a tie at
    # 2/6 goes to the older head, a4; b2 and b3 find 1 cpu. Counting a1 as placed would give b1, a2, a3, b2.
    assert fake.take() == [("accept", ["o1"], ["a2", "b1", "a3", "a4"], 0)]
    assert sorted(s.last_failures) == ["a1", "b2", "b3"]


# ---------------------------------------------------------------------- offers (item 6, 7)
async def test_offers_no_queued_task_could_use_are_declined_with_a_filter_the_others_kept() -> None:
    s, fake, d, _ = make()
    await s.offers(d, [offer("o1", "a1", "h1", cpus=4)])
    s.submit(cmd("r", cpus=4))
    s.schedule_once(d)
    await s.status_update(d, status("r", tpb.TASK_RUNNING, "a1"))
    fake.take()
    await s.offers(
        d,
        [
            offer("o2", "a1", "h1", cpus=4),  # 4 offered + 4 used by r: `later` could fit once r ends
            offer("o3", "a2", "h2", cpus=2),  # never enough for anything queued
            offer("o4", "a3", "h3", cpus=8, pool="b"),  # enough, but big's constraint says no (for now)
        ],
    )
    s.submit(cmd("big", cpus=8, hard_constraints=(AttributeValue("pool", equals="a"),)))
    s.submit(cmd("later", cpus=5, ready_at=1e9))  # not ready yet
    s.schedule_once(d)
    assert fake.take() == [("decline", ["o3"], 30.0)]
    assert sorted(s.leases) == ["a1", "a3"]
    assert s.metrics.declined_offers == 1
    s.submit(cmd("small", cpus=1))  # offers were filtered: revive, so that h2 comes back for it
    assert fake.take() == [("revive",)]


async def test_leases_expire_and_go_back() -> None:
    s, fake, d, clock = make(lease_expiry=10)
    await s.offers(d, [offer("o1", "a1", "h1", cpus=1)])
    clock.now += 4
    await s.offers(d, [offer("o2", "a1", "h1", cpus=1)])
    s.submit(cmd("later", cpus=1, ready_at=1e9))  # never ready, but it could use the lease: kept until expiry
    clock.now += 6
    assert s.schedule_once(d) is None
    assert fake.take() == [("decline", ["o1"], 5.0)]
    assert [o.offer_id for o in s.hosts()[0].offers] == ["o2"]
    assert s.metrics.expired_offers == 1
    clock.now += 4
    assert s.schedule_once(d) is None
    assert fake.take() == [("decline", ["o2"], 5.0)]
    assert s.leases == {} and s.metrics.expired_offers == 2


async def test_with_an_autoscaler_expired_offers_come_straight_back() -> None:
    seen: list[list[str]] = []
    s, fake, d, clock = make(after_run=lambda result, hosts: seen.append([h.hostname for h in hosts]))
    await s.offers(d, [offer("o1", "a1", "h1", cpus=1)])
    clock.now += 10
    s.schedule_once(d)
    assert fake.take() == [("decline", ["o1"], 0.0)]
    assert seen == [[]]


async def test_nothing_queued_declines_everything_for_long_and_suppresses_until_submit() -> None:
    s, fake, d, _ = make()
    await s.offers(d, [offer("o1", "a1", "h1", cpus=1), offer("o2", "a2", "h2", cpus=1)])
    assert s.schedule_once(d) is None
    assert fake.take() == [("decline", ["o1", "o2"], 60.0), ("suppress",)]
    s.submit(cmd("t", cpus=1))
    assert fake.take() == [("revive",)]


async def test_one_accept_per_agent_per_run_with_all_its_tasks_and_every_offer_of_its_lease() -> None:
    s, fake, d, _ = make()
    await s.offers(
        d,
        [
            offer("o1", "a1", "h1", cpus=2, ports=(31000, 31000)),
            offer("o2", "a1", "h1", cpus=1, ports=(31005, 31006)),
            offer("o3", "a2", "h2", cpus=2),
        ],
    )
    s.submit(cmd("t1", cpus=1, ports=2), cmd("t2", cpus=2), cmd("t3", cpus=2), cmd("t4", cpus=1))
    result = s.schedule_once(d)
    # t1 needs ports: only h1 has them (its two offers: 3 cpus, ports 31000, 31005-31006), the lowest two.
    # t2: h1 (3 - 2 + 2) / 3 = 1 ties h2 (2 - 2 + 2) / 2 = 1: h1 by name. t3: h2. t4: no cpu left.
    assert result is not None
    assert [(a.task.id, a.hostname, a.ports) for a in result.assignments] == [
        ("t1", "h1", (31000, 31005)),
        ("t2", "h1", ()),
        ("t3", "h2", ()),
    ]
    assert fake.take() == [("accept", ["o1", "o2"], ["t1", "t2"], 0), ("accept", ["o3"], ["t3"], 0)]
    assert s.metrics.launched_accepts == 2 and s.metrics.assigned == 3


async def test_runs_are_coalesced_and_a_delayed_task_wakes_the_loop_when_it_is_ready() -> None:
    s, fake, d, _ = make(loop_interval=0.05)
    s.clock = time.monotonic
    loop = asyncio.create_task(s.run(d))
    try:
        # Everything arrives in one event-loop turn: one run, one accept with the three tasks.
        await s.offers(d, [offer("o1", "a1", "h1", cpus=4)])
        s.submit(cmd("t1", cpus=1), cmd("t2", cpus=1))
        s.submit(cmd("t3", cpus=1))
        await until(lambda: bool(fake.calls), what="the first run")
        assert fake.take() == [("accept", ["o1"], ["t1", "t2", "t3"], 5.0)]
        assert s.metrics.runs == 1
        # A task ready in 0.3 s is launched then, not at the next periodic wake-up (lease_expiry / 2 = 5 s).
        await s.offers(d, [offer("o2", "a1", "h1", cpus=1)])
        ready_at = time.monotonic() + 0.3
        s.submit(cmd("t4", cpus=1, ready_at=ready_at))
        await until(lambda: any(c[0] == "accept" for c in fake.calls), timeout=2.0, what="t4 launched")
        assert time.monotonic() >= ready_at
        assert [c for c in fake.take() if c[0] == "accept"] == [("accept", ["o2"], ["t4"], 5.0)]
    finally:
        loop.cancel()


def test_next_wake_is_the_earliest_of_lease_expiry_ready_at_and_the_idle_wait() -> None:
    s, _, _, clock = make(lease_expiry=10)
    assert s.next_wake(clock.now) == 5.0  # nothing pending: half the lease expiry
    s.submit(cmd("t", ready_at=clock.now + 2))
    assert s.next_wake(clock.now) == pytest.approx(2.001)
    asyncio.run(s.offers(cast(SchedulerDriver, FakeDriver()), [offer("o1", "a1", "h1", cpus=1)]))
    clock.now += 1.5
    assert s.next_wake(clock.now) == pytest.approx(0.501)  # t is ready at +2
    clock.now = 108
    assert s.next_wake(clock.now) == pytest.approx(2.001)  # o1 expires at 110


# ---------------------------------------------------------------------- tasks, status updates, kill, metrics
async def test_status_updates_track_running_tasks_and_a_terminal_one_frees_the_host() -> None:
    q = TaskQueue()
    s, _, d, _ = make(queue=q)
    await s.offers(d, [offer("o1", "a1", "h1", cpus=2)])
    s.submit(cmd("t1", cpus=1, bucket="x"), cmd("t2", cpus=1, bucket="x"))
    s.schedule_once(d)
    assert s.running == {"a1": {"t1": s.tasks["t1"], "t2": s.tasks["t2"]}}
    assert q.usage("x") == {"cpus": 2.0}
    assert s.metrics.running == 2
    await s.status_update(d, status("t1", tpb.TASK_RUNNING, "a1"))
    await s.status_update(d, status("t1", tpb.TASK_FINISHED, "a1"))
    assert [[t.id for t in h.running] for h in s.hosts()] == [["t2"]]
    assert q.usage("x") == {"cpus": 1.0} and s.metrics.running == 1 and "t1" not in s.tasks
    await s.status_update(d, status("t2", tpb.TASK_FAILED, "a1"))
    assert s.hosts() == [] and s.running == {} and q.usage("x") == {}
    s.submit(cmd("t1", cpus=1))  # an ended task's id may be used again


async def test_kill_of_a_queued_task_ends_it_and_frees_its_id_kill_of_a_launched_one_asks_the_master() -> None:
    updates: list[tuple[str | None, str, int, str]] = []
    s, fake, d, _ = make(on_update=lambda t, st: updates.append((t and t.id, st.task_id, st.state, st.message)))
    s.submit(cmd("q", cpus=1))
    s.kill("q")
    assert "q" not in s.tasks and s.pending() == 0 and s.metrics.queued == 0
    assert updates == [("q", "q", tpb.TASK_KILLED, "killed before launch")]
    s.submit(cmd("q", cpus=1))
    await s.offers(d, [offer("o1", "a1", "h1", cpus=1)])
    s.schedule_once(d)
    fake.take()
    s.kill("q")
    assert fake.take() == [("kill", "q", "a1")]
    s.kill("nobody")
    assert fake.take() == []


async def test_metrics_count_queue_runs_placements_and_reasons() -> None:
    s, _, d, _ = make()
    await s.offers(d, [offer("o1", "a1", "h1", cpus=2), offer("o2", "a2", "h2", cpus=1)])
    s.submit(cmd("a", cpus=2), cmd("b", cpus=4), cmd("c", cpus=4, ready_at=1e9))
    assert s.metrics.queued == 3
    s.schedule_once(d)
    m = s.metrics.as_dict()
    del m["last_run_ms"]
    assert m == {
        "runs": 1,
        "failed_runs": 0,
        "last_error": "",
        "assigned": 1,
        "launched_accepts": 1,
        "declined_offers": 1,  # h2's single cpu: no queued task could use it
        "expired_offers": 0,
        "unplaced_last_run": 1,
        "queued": 2,
        "running": 1,
        "drain_migrations": 0,
        "failures_by_reason": {"resource:cpus": 2},  # b: h1 has 0 cpus left after a, h2 has 1
    }


async def test_a_task_info_error_ends_the_task_instead_of_blocking_its_id() -> None:
    updates: list[tuple[str, int]] = []
    s, fake, d, _ = make(on_update=lambda t, st: updates.append((st.task_id, st.state)))
    await s.offers(d, [offer("o1", "a1", "h1", cpus=2)])
    s.submit(TaskRequest("bad", cpus=1, payload=None), cmd("good", cpus=1))
    s.schedule_once(d)
    assert fake.take() == [("accept", ["o1"], ["good"], 5.0)]
    assert updates == [("bad", tpb.TASK_ERROR)] and "bad" not in s.tasks


async def test_an_engine_without_start_gets_the_ready_tasks_as_one_batch() -> None:
    class Recording:
        def __init__(self) -> None:
            self.inner = PlacementEngine()
            self.calls: list[list[str]] = []

        def schedule(self, tasks: Any, hosts: Any) -> SchedulingResult:
            self.calls.append([t.id for t in tasks])
            return self.inner.schedule(tasks, hosts)

    engine = Recording()
    s, fake, d, _ = make(engine=engine)
    await s.offers(d, [offer("o1", "a1", "h1", cpus=1)])
    s.submit(cmd("x", cpus=1), cmd("y", cpus=1))
    s.schedule_once(d)
    assert engine.calls == [["x", "y"]]
    assert fake.take() == [("accept", ["o1"], ["x"], 0)]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="lease_expiry must be a number >= 0, not -1"):
        PlacementScheduler(PlacementEngine(), lease_expiry=-1)
    s = PlacementScheduler(PlacementEngine())
    with pytest.raises(TypeError, match="submit takes TaskRequests, not str"):
        s.submit("t")  # type: ignore[arg-type]


def test_running_task_view_marks_exclusive_tasks() -> None:
    from scheduler_sdk.placement import ExclusiveHost
    from scheduler_sdk.placement.agents import running_task

    assert running_task(cmd("x", cpus=1, hard_constraints=(ExclusiveHost(),))) == RunningTask(
        "x", cpus=1, exclusive=True
    )


async def test_the_loop_sends_a_large_runs_accepts_in_batches_a_loop_turn_apart() -> None:
    s, fake, d, _ = make(loop_interval=0.001, launch_batch=5)
    s.clock = time.monotonic
    turn = 0
    sent_at: list[tuple[int, int]] = []  # (loop turn, tasks) of each ACCEPT

    def accept(offer_ids: list[str], tasks: list[tpb.TaskInfo], refuse_seconds: float | None = None) -> None:
        sent_at.append((turn, len(tasks)))
        fake.calls.append(("accept", list(offer_ids), [t.task_id for t in tasks], refuse_seconds))

    fake.accept = accept  # type: ignore[method-assign]

    async def ticker() -> None:
        nonlocal turn
        while True:
            turn += 1
            await asyncio.sleep(0)

    # 6 agents of 2 cpus, 12 tasks of 1 cpu: one run, six ACCEPTs of two tasks each.
    await s.offers(d, [offer(f"o{i}", f"a{i}", f"h{i}", cpus=2) for i in range(6)])
    s.submit(*(cmd(f"t{i:02}", cpus=1) for i in range(12)))
    ticking = asyncio.create_task(ticker())
    loop = asyncio.create_task(s.run(d))
    try:
        await until(lambda: len(sent_at) == 6, what="every ACCEPT")
    finally:
        loop.cancel()
        ticking.cancel()
    assert s.metrics.runs == 1
    by_turn: dict[int, int] = {}
    for at, tasks in sent_at:
        by_turn[at] = by_turn.get(at, 0) + tasks
    assert sorted(by_turn.values()) == [4, 4, 4]  # at most 5 tasks a batch, whole ACCEPTs of 2
    assert sorted(t for c in fake.calls for t in c[2]) == [f"t{i:02}" for i in range(12)]
    with pytest.raises(ValueError, match="launch_batch"):
        make(launch_batch=0)
