"""LifecycleAffinity: perpetual tasks on hosts apart from transient ones (scores, as hard, in the engine)."""

from __future__ import annotations

import pytest

from scheduler_sdk.placement import LifecycleAffinity
from scheduler_sdk.placement.engine import PlacementEngine
from scheduler_sdk.placement.fitness import BinPacking
from scheduler_sdk.placement.model import Host, OfferSlice, RunningTask, TaskRequest
from scheduler_sdk.placement.run_state import HostState
from tests.unit.scheduler_sdk.placement.test_constraints import ProtocolOnlyContext, placed

LIFECYCLE_OF = {"p": "perpetual", "p2": "perpetual", "t": "transient", "batch": "transient"}


def host(name: str, *groups: str, cpus: float = 4) -> Host:
    running = tuple(RunningTask(f"{name}-{i}", group=g, cpus=1) for i, g in enumerate(groups))
    return Host(
        hostname=name, agent_id=f"a-{name}", offers=(OfferSlice(f"o-{name}", cpus=cpus, mem=4000),), running=running
    )


def score(c: LifecycleAffinity, h: Host, group: str = "new") -> tuple[bool, float, str]:
    ctx = ProtocolOnlyContext([h])
    r = c.evaluate(TaskRequest("x", cpus=1, group=group), ctx.hosts()[0], ctx)
    return r.ok, r.score, r.reason


def test_scores_same_lifecycle_1_empty_half_other_0() -> None:
    c = LifecycleAffinity("perpetual", LIFECYCLE_OF)
    assert score(c, host("same", "p", "p2")) == (True, 1.0, "")
    assert score(c, host("empty")) == (True, 0.5, "")
    assert score(c, host("other", "p", "t")) == (False, 0.0, "host runs transient tasks, the task is perpetual")
    assert score(c, host("batch", "batch")) == (False, 0.0, "host runs transient tasks, the task is perpetual")
    # groups the map does not know are neutral: the host counts as empty of lifecycles
    assert score(c, host("neutral", "unknown", "")) == (True, 0.5, "")
    assert score(c, host("mixed", "unknown", "p")) == (True, 1.0, "")
    assert repr(c) == "LifecycleAffinity('perpetual')" and c.name == "lifecycle(perpetual)"
    with pytest.raises(ValueError, match="lifecycle must not be empty"):
        LifecycleAffinity("", LIFECYCLE_OF)


def test_the_map_is_read_live_and_outside_tasks_count() -> None:
    of: dict[str, str] = {}
    outside: dict[str, set[str]] = {}
    c = LifecycleAffinity("transient", of, outside)
    h = host("h1", "g")
    assert score(c, h)[1] == 0.5
    of["g"] = "perpetual"  # the owner fills the map after the constraint was made
    assert score(c, h)[1] == 0.0
    of["g"] = "transient"
    assert score(c, h)[1] == 1.0
    outside["a-h1"] = {"perpetual"}  # another scheduler's perpetual task on the same agent
    assert score(c, h)[:2] == (False, 0.0)
    assert score(c, host("h2"))[1] == 0.5  # outside names agents: h2's is not in it
    outside["a-h2"] = {"transient"}
    assert score(c, host("h2"))[1] == 1.0


def test_tasks_assigned_in_the_same_run_count() -> None:
    c = LifecycleAffinity("perpetual", LIFECYCLE_OF)
    view = HostState(host("h"), 0)
    ctx = ProtocolOnlyContext([host("h")])
    assert c.evaluate(TaskRequest("x", cpus=1), view, ctx).score == 0.5
    view.assigned.append(TaskRequest("y", cpus=1, group="t"))
    view._groups = None  # the engine resets its cache on assignment; do as it does
    assert c.evaluate(TaskRequest("x", cpus=1), view, ctx).score == 0.0


def engine(w: float) -> PlacementEngine:
    return PlacementEngine(BinPacking("cpus"), soft_constraint_weight=w)


def test_in_the_jobs_weight_an_empty_host_beats_a_fuller_one_of_the_other_lifecycle() -> None:
    # h1 runs 3 of its 4 cpus of perpetual work: bin packing wants the transient task there, the lifecycle does not
    hosts = [host("h1", "p", "p", "p", cpus=1), host("h2")]
    t = TaskRequest("t1", cpus=1, group="t", soft_constraints=(LifecycleAffinity("transient", LIFECYCLE_OF),))
    assert placed(engine(0.5).schedule([t], hosts)) == {"t1": "h1"}  # the engine's default weight: packing wins
    assert placed(engine(0.75).schedule([t], hosts)) == {"t1": "h2"}  # the jobs engine's: the lifecycle wins
    # with no room apart the soft constraint refuses nothing: it shares
    assert placed(engine(0.75).schedule([t], [host("h1", "p", "p", "p", cpus=1)])) == {"t1": "h1"}


def test_same_lifecycle_packs_together_and_the_other_goes_apart() -> None:
    hosts = [host(f"h{i}") for i in range(4)]
    of = {"p": "perpetual", "t": "transient"}
    tasks = [
        TaskRequest(f"{g}{i}", cpus=1, group=g, soft_constraints=(LifecycleAffinity(lc, of),))
        for g, lc in (("p", "perpetual"), ("t", "transient"))
        for i in range(3)
    ]
    where = placed(engine(0.75).schedule(tasks, hosts))
    p_hosts = {where[f"p{i}"] for i in range(3)}
    t_hosts = {where[f"t{i}"] for i in range(3)}
    assert len(p_hosts) == 1 and len(t_hosts) == 1 and not p_hosts & t_hosts, where
