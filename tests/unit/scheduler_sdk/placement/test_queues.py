"""Queue rules with hand-computed orders, and hypothesis properties (caps, guarantees, DRF, tiers)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler_sdk.placement.model import Assignment, Host, OfferSlice, RunningTask, TaskRequest
from scheduler_sdk.placement.queues import EPSILON, TaskQueue, cluster_totals, demand


def ids(tasks: list[TaskRequest]) -> list[str]:
    return [t.id for t in tasks]


def t(task_id: str, bucket: str = "", cpus: float = 1.0, mem: float = 0.0, **kw: object) -> TaskRequest:
    return TaskRequest(task_id, cpus=cpus, mem=mem, bucket=bucket, **kw)  # type: ignore[arg-type]


def drive(q: TaskQueue, now: float = 0.0) -> list[str]:
    """A pass in which every task yielded is assigned."""
    out = []
    for task in q.order(now):
        q.on_assigned(task)
        out.append(task.id)
    return out


# ---------------------------------------------------------------------- tiers, FIFO, ready_at
def test_tier_zero_before_tier_one_and_fifo_inside_a_bucket() -> None:
    q = TaskQueue({"cpus": 100})
    for task in [t("late-1", tier=1), t("x1"), t("late-2", tier=1), t("x2"), t("x3", tier=0)]:
        q.add(task)
    assert ids(q.next_batch(0.0)) == ["x1", "x2", "x3", "late-1", "late-2"]


def test_a_higher_tier_waits_even_for_a_bucket_with_a_large_share() -> None:
    q = TaskQueue({"cpus": 10})
    q.on_assigned(t("r", bucket="big", cpus=9))  # "big" has share 0.9
    q.add(t("small-t1", bucket="small", tier=1))
    q.add(t("big-t0", bucket="big", tier=0))
    assert ids(q.next_batch(0.0)) == ["big-t0", "small-t1"]


def test_ready_at_in_the_future_is_skipped_until_then() -> None:
    q = TaskQueue({"cpus": 10})
    q.add(t("a", ready_at=10.0))
    q.add(t("b"))
    q.add(t("c", ready_at=5.0))
    assert ids(q.ready(4.9)) == ["b"]
    assert q.next_ready_at(4.9) == 5.0
    assert ids(q.ready(5.0)) == ["b", "c"]
    assert q.next_ready_at(5.0) == 10.0
    assert ids(q.ready(10.0)) == ["a", "b", "c"]
    assert q.next_ready_at(10.0) is None
    assert len(q) == 3  # asking changes nothing


def test_defer_is_a_delayed_retry_that_keeps_the_place_in_line() -> None:
    q = TaskQueue({"cpus": 10})
    for name in "abc":
        q.add(t(name))
    deferred = q.defer("a", 7.0)
    assert deferred is not None and deferred.ready_at == 7.0
    assert ids(q.ready(0.0)) == ["b", "c"]
    assert ids(q.ready(7.0)) == ["a", "b", "c"]
    assert q.defer("nope", 1.0) is None


def test_re_adding_a_task_replaces_it_in_place_and_remove_drops_it() -> None:
    q = TaskQueue({"cpus": 10})
    for name in "abc":
        q.add(t(name))
    q.add(t("a", cpus=2.0))
    assert ids(q.ready(0.0)) == ["a", "b", "c"]
    assert q.get("a") is not None and q.get("a").cpus == 2.0  # type: ignore[union-attr]
    removed = q.pop("b")
    assert removed is not None and removed.id == "b"
    assert q.pop("b") is None
    q.remove("b")  # unknown ids are ignored
    assert ids(q.ready(0.0)) == ["a", "c"]
    assert "a" in q and "b" not in q and len(q) == 2
    assert ids(q.pending()) == ["a", "c"]


def test_re_adding_into_another_bucket_moves_it_there() -> None:
    q = TaskQueue({"cpus": 10})
    q.add(t("a", bucket="x"))
    q.add(t("b", bucket="x"))
    q.add(t("a", bucket="y"))
    assert q.counts() == {(0, "x"): 1, (0, "y"): 1}


# ---------------------------------------------------------------------- DRF
def add_drf_example(q: TaskQueue) -> None:
    # The DRF paper's example: 9 cpus, 18 GB; A's tasks <1 cpu, 4 GB> (memory-dominant), B's <3 cpus, 1 GB>.
    q.set_total({"cpus": 9, "mem": 18})
    for i in range(1, 6):
        q.add(t(f"a{i}", bucket="A", cpus=1, mem=4))
    for i in range(1, 6):
        q.add(t(f"b{i}", bucket="B", cpus=3, mem=1))


# Hand-computed: A's share grows by 4/18 per task, B's by 3/9. Ties (0 = 0, 12/18 = 6/9) go to the older head.
DRF_ORDER = ["a1", "b1", "a2", "b2", "a3", "a4", "b3", "a5", "b4", "b5"]


def test_drf_buckets_by_dominant_share_recomputed_after_every_assignment() -> None:
    q = TaskQueue()
    add_drf_example(q)
    assert ids(q.next_batch(0.0)) == DRF_ORDER
    assert len(q) == 10  # next_batch only looks


def test_drf_task_by_task_gives_the_same_order_and_tracks_usage() -> None:
    q = TaskQueue()
    add_drf_example(q)
    assert drive(q) == DRF_ORDER
    assert q.usage("A") == {"cpus": 5.0, "mem": 20.0}
    assert q.usage("B") == {"cpus": 15.0, "mem": 5.0}
    assert q.dominant_share("B") == pytest.approx(15 / 9)
    assert len(q) == 0 and q.running() == 10


def test_a_task_not_assigned_does_not_raise_its_buckets_share() -> None:
    q = TaskQueue()
    add_drf_example(q)
    seen = []
    for task in q.order(0.0):
        seen.append(task.id)
        if task.id != "a1":  # a1 cannot be placed in this pass
            q.on_assigned(task)
    # A keeps share 0 after a1's refusal, so a2 (older than b1) follows at once.
    assert seen[:4] == ["a1", "a2", "b1", "a3"]
    assert ids(q.pending()) == ["a1"]


def test_a_plan_orders_by_what_the_caller_placed_and_leaves_the_queue_alone() -> None:
    q = TaskQueue()
    add_drf_example(q)
    plan = q.plan(0.0)
    seen = []
    for task in plan:
        seen.append(task.id)
        if task.id != "a1":  # a1 cannot be placed
            plan.assign(task)
    # A stays at 0 after a1: a2 (older head than b1), b1, a3 (4/18 < 6/18), b2, a4 (8/18 < 12/18), a tie at 12/18
    # goes to the older head a5, then B alone. next_batch (every task counted) would give DRF_ORDER.
    assert seen == ["a1", "a2", "b1", "a3", "b2", "a4", "a5", "b3", "b4", "b5"]
    assert len(q) == 10 and q.usage("A") == {} and q.running() == 0
    with pytest.raises(TypeError, match=r"assign\(\) is for passes made by TaskQueue\.plan"):
        q.order(0.0).assign(t("a1", bucket="A"))


def test_a_plan_holds_a_task_over_its_cap_by_what_was_assigned() -> None:
    q = TaskQueue({"cpus": 10})
    q.set_bucket("x", cap={"cpus": 2})
    for name in ("x1", "x2", "x3"):
        q.add(t(name, bucket="x", cpus=1))
    plan = q.plan(0.0)
    first = next(plan)
    assert first.id == "x1"  # not placed: no usage noted
    second = next(plan)
    plan.assign(second)
    assert [task.id for task in plan] == ["x3"]  # x2 + x3 = 2: within the cap
    assert plan.held == {}


def test_usage_changes_between_picks_are_seen_by_a_live_pass() -> None:
    q = TaskQueue({"cpus": 10})
    q.on_assigned(t("ra", bucket="A", cpus=5))
    q.add(t("a1", bucket="A"))
    q.add(t("b1", bucket="B"))
    q.add(t("b2", bucket="B"))
    it = q.order(0.0)
    first = next(it)
    assert first.id == "b1"
    q.on_assigned(first)
    q.on_finished("ra")  # A's task ends: A's share drops to 0 < B's 0.1
    assert next(it).id == "a1"


def test_weights_scale_shares() -> None:
    q = TaskQueue({"cpus": 10})
    q.set_bucket("A", weight=2)
    for i in range(1, 7):
        q.add(t(f"a{i}", bucket="A"))
    for i in range(1, 7):
        q.add(t(f"b{i}", bucket="B"))
    # A's share grows 0.05 per task, B's 0.1; ties go to the older head (every a before every b).
    assert ids(q.next_batch(0.0)) == ["a1", "b1", "a2", "a3", "b2", "a4", "a5", "b3", "a6", "b4", "b5", "b6"]


def test_running_usage_sets_the_starting_point() -> None:
    q = TaskQueue({"cpus": 10, "mem": 100})
    q.on_assigned(t("ra", bucket="A", cpus=1, mem=50))  # A's dominant share 0.5 (memory)
    q.on_assigned(t("rb", bucket="B", cpus=3))  # B's 0.3
    q.add(t("a1", bucket="A", cpus=1))
    q.add(t("b1", bucket="B", cpus=1))
    q.add(t("b2", bucket="B", cpus=1))
    q.add(t("b3", bucket="B", cpus=1))
    # B: 0.3 -> 0.4 -> 0.5 (tie with A at 0.5: a1 is older) -> a1 -> b3
    assert ids(q.next_batch(0.0)) == ["b1", "b2", "a1", "b3"]


def test_without_totals_shares_are_relative_to_all_usage() -> None:
    q = TaskQueue()
    q.on_assigned(t("ra", bucket="A", cpus=3))
    q.on_assigned(t("rb", bucket="B", cpus=1))
    q.add(t("a1", bucket="A"))
    q.add(t("b1", bucket="B"))
    assert q.dominant_share("A") == pytest.approx(0.75)
    assert ids(q.next_batch(0.0)) == ["b1", "a1"]


def test_on_assigned_is_idempotent_and_on_finished_accepts_a_task_or_an_id() -> None:
    q = TaskQueue({"cpus": 10})
    task = t("x", bucket="A", cpus=2)
    q.add(task)
    q.on_assigned(task)
    q.on_assigned(task)
    assert q.usage("A") == {"cpus": 2.0}
    q.on_finished(task)
    assert q.usage("A") == {}
    q.on_finished("x")
    q.on_finished("never-seen")
    assert q.usage("A") == {}


def test_commit_takes_assignments() -> None:
    q = TaskQueue({"cpus": 10})
    a, b = t("a", bucket="A"), t("b", bucket="A")
    q.add(a)
    q.add(b)
    batch = q.next_batch(0.0, 1)
    assert ids(batch) == ["a"]
    q.commit([Assignment(task=a, hostname="h", agent_id="h", offer_ids=("o",))])
    assert ids(q.ready(0.0)) == ["b"]
    assert q.usage("A") == {"cpus": 1.0}
    assert q.next_batch(0.0, 0) == []


# ---------------------------------------------------------------------- guarantees
def test_a_bucket_below_its_guarantee_goes_first() -> None:
    q = TaskQueue({"cpus": 10})
    q.set_bucket("G", guarantee={"cpus": 3})
    q.on_assigned(t("rg", bucket="G", cpus=2))  # G: share 0.2, guarantee fraction 2/3
    for i in range(1, 5):
        q.add(t(f"a{i}", bucket="A"))
    q.add(t("g1", bucket="G"))
    q.add(t("g2", bucket="G"))
    # g1 (G below guarantee), then G at 3/3: plain DRF, A from 0 up to 0.3, tie at 0.3 -> a4 (older than g2)
    assert ids(q.next_batch(0.0)) == ["g1", "a1", "a2", "a3", "a4", "g2"]


def test_of_two_buckets_below_guarantee_the_furthest_below_goes_first() -> None:
    q = TaskQueue({"cpus": 100, "mem": 1000})
    q.set_bucket("X", guarantee={"cpus": 4})
    q.set_bucket("Y", guarantee={"mem": 400})
    q.on_assigned(t("rx", bucket="X", cpus=2))  # 0.5 of its guarantee
    q.on_assigned(t("ry", bucket="Y", cpus=0, mem=100))  # 0.25 of its guarantee
    q.add(t("x1", bucket="X", cpus=1))
    q.add(t("y1", bucket="Y", cpus=0, mem=100))
    q.add(t("y2", bucket="Y", cpus=0, mem=100))
    q.add(t("y3", bucket="Y", cpus=0, mem=100))
    # Y 0.25 -> y1 -> 0.5 (tie with X 0.5: x1 older) -> x1 -> X 0.75 -> y2 (0.5) -> Y 0.75 ... y3 -> Y at 1
    assert ids(q.next_batch(0.0)) == ["y1", "x1", "y2", "y3"]
    assert q.below_guarantee("X") and not q.below_guarantee("A")


# ---------------------------------------------------------------------- caps
def test_cap_holds_a_task_that_would_exceed_it_and_lets_smaller_ones_pass() -> None:
    q = TaskQueue({"cpus": 100})
    q.set_bucket("C", cap={"cpus": 4})
    for name, cpus in [("c1", 2), ("c2", 3), ("c3", 1), ("c4", 1), ("c5", 1)]:
        q.add(t(name, bucket="C", cpus=cpus))
    q.add(t("d1", bucket="D", cpus=50))
    p = q.order(0.0)
    got = []
    for task in p:
        q.on_assigned(task)
        got.append(task.id)
    # c1 (tie at 0, older) -> d1 (D 0 < C 0.02) -> c2 held (2 + 3 > 4) -> c3 (3) -> c4 (4) -> c5 held (4 + 1 > 4)
    assert got == ["c1", "d1", "c3", "c4"]
    assert set(p.held) == {"c2", "c5"}
    assert "cap on cpus" in p.held["c2"]
    assert q.usage("C") == {"cpus": 4.0}
    assert ids(q.pending()) == ["c2", "c5"]  # held, not dropped


def test_cap_order_is_exact() -> None:
    q = TaskQueue({"cpus": 10})
    q.set_bucket("C", cap={"cpus": 4})
    for name, cpus in [("c1", 2), ("c2", 3), ("c3", 1), ("c4", 1)]:
        q.add(t(name, bucket="C", cpus=cpus))
    q.add(t("d1", bucket="D", cpus=5))
    # c1 (C 0.2) -> d1 (D 0 < 0.2; D 0.5) -> c2 held (2+3 > 4) -> c3 (C 0.3) -> c4 (C 0.4)
    assert ids(q.next_batch(0.0)) == ["c1", "d1", "c3", "c4"]


def test_a_bucket_at_its_cap_gets_nothing_until_usage_drops() -> None:
    q = TaskQueue({"cpus": 10, "mem": 100})
    q.set_bucket("C", cap={"cpus": 2})
    q.on_assigned(t("r1", bucket="C", cpus=2))
    q.add(t("c1", bucket="C", cpus=1))
    q.add(t("c2", bucket="C", cpus=0, mem=10))  # asks for none of the capped resource
    assert ids(q.ready(0.0)) == ["c2"]
    q.on_finished("r1")
    assert ids(q.ready(0.0)) == ["c1", "c2"]


def test_guarantee_and_cap_validation() -> None:
    q = TaskQueue()
    with pytest.raises(ValueError, match="weight"):
        q.set_bucket("x", weight=0)
    with pytest.raises(ValueError, match="cap of cpus"):
        q.set_bucket("x", cap={"cpus": -1})
    assert q.bucket("never").weight == 1.0


# ---------------------------------------------------------------------- helpers
def test_demand_and_cluster_totals() -> None:
    task = TaskRequest("x", cpus=1, mem=2, ports=3, scalars={"gpus": 1, "zero": 0})
    assert demand(task) == {"cpus": 1.0, "mem": 2.0, "ports": 3.0, "gpus": 1.0}
    hosts = [
        Host(
            "h1",
            offers=(OfferSlice("o1", cpus=2, mem=100, ports=((1, 10),), scalars={"gpus": 1}),),
            running=(RunningTask("r", cpus=1, mem=50, ports=2),),
        ),
        Host("h2", offers=(OfferSlice("o2", cpus=1),), total_cpus=8, total_mem=1000, total_scalars={"gpus": 4}),
    ]
    assert cluster_totals(hosts) == {"cpus": 11.0, "mem": 1150.0, "ports": 12.0, "gpus": 5.0}


# ---------------------------------------------------------------------- properties
BUCKETS = ["A", "B", "C", "D"]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[TaskQueue, list[TaskRequest], list[bool], float]:
    q = TaskQueue({"cpus": 40, "mem": 400})
    for name in draw(st.lists(st.sampled_from(BUCKETS), unique=True, max_size=4)):
        cap = draw(st.none() | st.fixed_dictionaries({"cpus": st.integers(0, 12)}))
        guarantee = draw(
            st.none()
            | st.fixed_dictionaries({"cpus": st.integers(1, 10)})
            | st.fixed_dictionaries({"mem": st.integers(10, 100)})
        )
        q.set_bucket(name, weight=draw(st.sampled_from([0.5, 1, 2, 3])), guarantee=guarantee, cap=cap)
    for i in range(draw(st.integers(0, 4))):  # running tasks
        q.on_assigned(
            TaskRequest(
                f"run{i}",
                cpus=draw(st.integers(0, 4)),
                mem=draw(st.integers(0, 40)),
                bucket=draw(st.sampled_from(BUCKETS)),
            )
        )
    tasks = []
    for i in range(draw(st.integers(0, 30))):
        task = TaskRequest(
            f"t{i}",
            cpus=draw(st.integers(0, 4)),
            mem=draw(st.integers(0, 40)),
            bucket=draw(st.sampled_from(BUCKETS)),
            tier=draw(st.integers(0, 2)),
            ready_at=draw(st.sampled_from([0.0, 0.0, 0.0, 5.0])),
        )
        tasks.append(task)
        q.add(task)
    accept = draw(st.lists(st.booleans(), min_size=len(tasks), max_size=len(tasks)))
    now = draw(st.sampled_from([0.0, 5.0]))
    return q, tasks, accept, now


def fits_cap(q: TaskQueue, task: TaskRequest) -> bool:
    usage = q.usage(task.bucket)
    return all(
        usage.get(r, 0.0) + a <= cap + EPSILON
        for r, cap in q.bucket(task.bucket).cap.items()
        if (a := demand(task).get(r, 0.0))
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_property_caps_guarantees_drf_and_tiers_hold_at_every_pick(
    scenario: tuple[TaskQueue, list[TaskRequest], list[bool], float],
) -> None:
    q, tasks, accept, now = scenario
    start_usage = {b: q.usage(b) for b in BUCKETS}
    yielded: set[str] = set()
    decisions = iter(accept)
    p = q.order(now)
    for task in p:
        assert task.id not in yielded and task.ready_at <= now
        # servable: pending, ready, not yet yielded in this pass, fits its bucket's cap
        servable = [x for x in tasks if x.id in q and x.id not in yielded and x.ready_at <= now and fits_cap(q, x)]
        assert fits_cap(q, task)
        assert all(x.tier >= task.tier for x in servable), "a lower tier was waiting"
        same_tier = [x for x in servable if x.tier == task.tier]
        if not q.below_guarantee(task.bucket):
            assert not any(q.below_guarantee(x.bucket) for x in same_tier), "a bucket below guarantee was waiting"
            best = min(q.dominant_share(x.bucket) for x in same_tier)
            assert q.dominant_share(task.bucket) <= best + 1e-9, "not the smallest weighted dominant share"
        yielded.add(task.id)
        if next(decisions):
            q.on_assigned(task)
        for b in BUCKETS:  # a bucket never goes over its cap (unless it was over before the pass)
            for r, cap in q.bucket(b).cap.items():
                if start_usage[b].get(r, 0.0) <= cap:
                    assert q.usage(b).get(r, 0.0) <= cap + EPSILON
    # every ready task was either yielded or held for its cap
    ready = {x.id for x in tasks if x.ready_at <= now}
    assert ready == yielded | set(p.held)
    assert not (yielded & set(p.held))


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_property_next_batch_equals_a_pass_where_everything_is_assigned(
    scenario: tuple[TaskQueue, list[TaskRequest], list[bool], float],
) -> None:
    q, _, _, now = scenario
    batch = ids(q.next_batch(now))
    assert drive(q, now) == batch
