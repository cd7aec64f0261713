"""Stream runs (stages, workers, the upstream endpoints each learns, scaling a stage, stages added and removed) and
the persistence of service runs (header and changed slots, read back mid-update and driven on alike)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.jobs.service_run import ServiceRun
from scheduler_sdk.frameworks.jobs.spec import JobSpec, UpdatePolicy
from scheduler_sdk.frameworks.jobs.tasks import Action, Kill, Launch, Message
from tests.unit.scheduler_sdk.test_service_run import Sim, service, started, steady, stream


def env(launch: Any) -> dict[str, str]:
    return dict(launch.env)


def messages(actions: Sequence[Action]) -> list[tuple[str, str, str, bytes]]:
    return [(a.task_id, a.agent_id, a.path, a.data) for a in actions if isinstance(a, Message)]


# -- streams ----------------------------------------------------------------------------------------------------


def test_each_worker_knows_its_stage_index_and_upstream_at_launch() -> None:
    run, sim = started(stream(("gen", 2), ("count", 1), lifecycle="transient"))
    by_id = {t.task_id: t for t in sim.launched}
    gen1, count0 = by_id["wc.1.gen.1.0"], by_id["wc.1.count.0.0"]
    assert env(gen1)["AIOMESOS_STAGE"] == "gen" and env(gen1)["AIOMESOS_STAGE_NUMBER"] == "0"
    assert env(gen1)["AIOMESOS_WORKER_INDEX"] == "1" and env(gen1)["AIOMESOS_UPSTREAM"] == ""
    assert env(count0)["AIOMESOS_STAGE_NUMBER"] == "1" and env(count0)["AIOMESOS_UPSTREAM_FILE"] == "upstream"
    assert count0.lifecycle == "transient" and count0.group == "wc.1.count" and count0.version == 1
    assert run.wanted_count() == 3 and run.step_state("gen") == "running"


def test_a_downstream_worker_learns_when_its_upstream_workers_move() -> None:
    run, sim = started(stream(("gen", 2), ("count", 1)))
    sim.start("wc.1.gen.0.0", 1.0, agent="a0", healthy=None)
    sim.start("wc.1.gen.1.0", 1.0, agent="a1", healthy=None)
    assert sim.messages == []  # nobody downstream runs yet
    sim.start("wc.1.count.0.0", 2.0, agent="a2", healthy=None)
    assert messages(sim.messages) == [("wc.1.count.0.0", "a2", "upstream", b"h-a0:31001\nh-a1:31002\n")]
    sim.messages.clear()
    # a gen worker dies: the count worker hears at once; the replacement keeps its stage and index
    actions = sim.status("wc.1.gen.1.0", tpb.TASK_FAILED, 3.0, exit_code=1)
    assert messages(actions) == [("wc.1.count.0.0", "a2", "upstream", b"h-a0:31001\n")]
    (launch,) = [a.task for a in actions if isinstance(a, Launch)]
    assert (launch.step, launch.index, launch.attempt) == ("gen", 1, 1)
    assert env(launch)["AIOMESOS_STAGE"] == "gen" and env(launch)["AIOMESOS_WORKER_INDEX"] == "1"
    sim.messages.clear()
    sim.start(launch.task_id, launch.ready_at, agent="a3", healthy=None)
    assert messages(sim.messages) == [("wc.1.count.0.0", "a2", "upstream", b"h-a0:31001\nh-a3:31004\n")]
    # a count worker launched now has them in its environment
    actions = sim.apply(run.scale(2, 5.0, "count"))
    (new,) = [a.task for a in actions if isinstance(a, Launch)]
    assert env(new)["AIOMESOS_UPSTREAM"] == "h-a0:31001,h-a3:31004"


def test_an_unhealthy_upstream_worker_is_no_endpoint() -> None:
    spec = stream(("gen", 1), ("count", 1))
    run, sim = started(spec)
    sim.run_queued(1.0, healthy=None)
    sim.messages.clear()
    sim.apply(run.draining("a0", 2.0))  # gen 0 runs on a0: killed to move, it is no endpoint from now
    assert [m[3] for m in messages(sim.messages)] == [b""]


def test_a_stage_scales_on_its_own_and_must_be_named() -> None:
    run, sim = started(stream(("gen", 2), ("count", 1)))
    actions = sim.apply(run.scale(4, 0.0, "gen"))
    assert sorted((a.task.step, a.task.index) for a in actions if isinstance(a, Launch)) == [("gen", 2), ("gen", 3)]
    assert run.wanted_count() == 5
    with pytest.raises(ValueError, match=r"stage: job wc has 2 stages \(gen, count\): name one"):
        run.scale(1, 0.0)
    with pytest.raises(ValueError, match="stage: no stage 'nope' in job wc"):
        run.scale(1, 0.0, "nope")
    with pytest.raises(ValueError, match="workers must be a whole number from 0 to 1000"):
        run.scale(-1, 0.0, "gen")


def test_an_update_adds_a_stage_and_retires_one_gone() -> None:
    run, sim, now = steady(stream(("gen", 1), ("count", 2)))
    v2 = stream(("gen", 1), ("sink", 1))
    actions = sim.apply(run.update(v2, 2, now))
    kills = [a for a in actions if isinstance(a, Kill)]
    assert {k.reason for k in kills} == {"stage count removed in version 2"} and len(kills) == 2
    (launch,) = [a.task for a in actions if isinstance(a, Launch)]
    assert launch.step == "sink" and env(launch)["AIOMESOS_UPSTREAM"].startswith("h-a0:")
    now = sim.settle(now)
    assert [(s.step, s.index, s.version) for s in run.slots()] == [("gen", 0, 2), ("sink", 0, 2)]
    with pytest.raises(KeyError):
        run.step_state("nope")


def test_a_stream_has_no_canaries() -> None:
    policy = UpdatePolicy(canary=1, min_healthy_time=0.0)
    run, sim, now = steady(stream(("gen", 2), update=policy))
    actions = sim.apply(run.update(stream(("gen", 2), command="new", update=policy), 2, now))
    assert len([a for a in actions if isinstance(a, Kill)]) == 1 and run.deployment().canaries == 0  # type: ignore[union-attr]


# -- persistence ------------------------------------------------------------------------------------------------


class Store:
    """What a store keeps of a run: its header and one row per slot, written after every event."""

    def __init__(self) -> None:
        self.header: dict[str, Any] = {}
        self.rows: dict[tuple[str, int], str] = {}

    def save(self, run: ServiceRun) -> None:
        self.header = json.loads(json.dumps(run.header()))
        for d in run.take_dirty():
            self.rows[(d["step"], d["index"])] = json.dumps(d)

    def load(self, specs: dict[int, JobSpec]) -> ServiceRun:
        run = ServiceRun.from_parts(self.header, [json.loads(r) for r in self.rows.values()], specs)
        run.mark_clean()
        return run


def test_a_run_read_back_mid_update_is_the_same_and_goes_on_alike() -> None:
    v1, v2 = service(3), service(3, command="serve v2", update=UpdatePolicy(canary=1, min_healthy_time=5.0))
    store = Store()
    run, sim, now = steady(v1)
    sim.check = store.save
    sim.apply(run.scale(4, now))
    now = sim.settle(now)
    sim.apply(run.scale(3, now))  # index 3 retired: gone, but its row stays
    sim.answer_kills(now)
    sim.apply(run.update(v2, 2, now))
    sim.run_queued(now)
    sim.tick(now + 5.0)
    sim.apply(run.promote(now + 5.0))
    sim.status(run.slots()[1].task_id, tpb.TASK_FAILED, now + 6.0)  # an old one fails, in backoff now
    now += 6.0
    copy = store.load({1: v1, 2: v2})
    assert copy.to_dict() == run.to_dict() and copy.take_dirty() == []
    assert copy.header()["versions"] == [1, 2] and copy.wanted_count() == 3
    slots = [(s.index, s.version, s.retired, s.killing) for s in copy.slots()]
    assert slots == [(0, 1, False, "replace"), (1, 1, False, ""), (2, 1, True, "retire"), (3, 2, False, "")]
    assert copy.live_tasks() == run.live_tasks() and copy.queued() == run.queued()
    assert copy.kills_outstanding() == run.kills_outstanding() and copy.next_deadline() == run.next_deadline()
    assert copy.deployment() == run.deployment() and copy.stable_versions() == {1}
    # both driven alike from here give the same actions and end the same
    twin = Sim(copy)
    twin.queued, twin.kills, twin.port = dict(sim.queued), list(sim.kills), sim.port
    for t in range(20):
        moment = now + t
        for s_ in (sim, twin):
            s_.answer_kills(moment)
            s_.run_queued(moment)
        assert repr(sim.tick(moment)) == repr(twin.tick(moment))
    assert copy.to_dict() == run.to_dict() and run.deployment().state == "succeeded"  # type: ignore[union-attr]
    final = store.load({2: v2})  # version 1 no longer runs: its spec is not needed
    assert final.to_dict() == run.to_dict()
    again = final.scale(4, now + 30.0)  # index 2's slot comes back: its attempts go on
    assert [a.task.task_id for a in again if isinstance(a, Launch)] == ["web.1.web.2.1"]


def test_a_scaled_count_is_kept_over_the_specs_count() -> None:
    store = Store()
    run, sim, now = steady(service(2))
    sim.apply(run.scale(4, now))
    store.save(run)
    assert store.load({1: service(2)}).wanted_count() == 4


def test_reading_back_wants_every_spec_and_each_slot_once() -> None:
    store = Store()
    v1, v2 = service(2), service(2, command="v2")
    run, sim, now = steady(v1)
    sim.apply(run.update(v2, 2, now))
    store.save(run)
    with pytest.raises(ValueError, match="no spec of version 1"):
        store.load({2: v2})
    rows = [json.loads(r) for r in store.rows.values()]
    with pytest.raises(ValueError, match=r"slot web\.0 is there twice"):
        ServiceRun.from_parts(store.header, [*rows, rows[0]], {1: v1, 2: v2})


def test_a_read_back_stream_tells_its_workers_their_upstream_again() -> None:
    store = Store()
    run, sim = started(stream(("gen", 1), ("count", 1)), check=store.save)
    now = sim.settle(0.0)
    copy = store.load({1: stream(("gen", 1), ("count", 1))})
    actions = copy.tick(now)
    assert [m[0] for m in messages(actions)] == [run.slots()[1].task_id]
