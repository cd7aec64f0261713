"""The core refuses a call over a bound before it changes anything: nothing stored, nothing sent, no offer lost;
unknown capabilities are ignored, not stored."""

from __future__ import annotations

import math

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.bounds import MAX_NAME_LENGTH
from mesos_master.cluster import CallError
from mesos_master.registry import PutFramework
from tests.unit.mesos_master.test_cluster import World, messages, task, updates

Capability = rpb.FrameworkInfo.Capability
Call = scheduler_pb2.Call


@pytest.fixture
def w() -> World:
    return World()


def test_a_framework_with_a_25_mb_name_is_refused_and_nothing_is_stored(w: World) -> None:
    with pytest.raises(CallError, match=f"^framework_info.name: 25000000 characters, at most {MAX_NAME_LENGTH}$"):
        w.subscribe("n" * 25_000_000)
    assert not w.master.frameworks
    assert not w.master.outbox


def test_a_framework_updated_with_a_25_mb_name_keeps_its_info(w: World) -> None:
    fid = w.subscribe("fw")
    w.drain()
    with pytest.raises(CallError, match=r"framework_info\.name: 25000000 characters"):
        w.master.update_framework(fid, rpb.FrameworkInfo(name="n" * 25_000_000))
    assert w.master.frameworks[fid].info.name == "fw"
    assert not w.master.outbox


def test_unknown_capabilities_are_ignored_not_stored(w: World) -> None:
    caps = [Capability(type=77), Capability(type=Capability.PARTITION_AWARE), Capability(type=1234)]
    fid = w.subscribe(capabilities=caps)
    [put] = [op for op in w.drain().writes if isinstance(op, PutFramework)]
    assert [c.type for c in put.info.capabilities] == [Capability.PARTITION_AWARE]
    assert [c.type for c in w.master.frameworks[fid].info.capabilities] == [Capability.PARTITION_AWARE]
    w.master.update_framework(fid, rpb.FrameworkInfo(name="fw", capabilities=[Capability(type=99)]))
    assert not w.master.frameworks[fid].info.capabilities


def test_an_accept_over_a_bound_is_refused_whole_and_its_offer_stays(w: World) -> None:
    w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    with pytest.raises(CallError, match=r"^operations\[0\]\.launch\.task_infos\[1\]\.task_id: 10000 characters"):
        w.accept(fid, [offer.id], [task("ok"), task("t" * 10_000)])
    assert offer.id in w.master.offers  # not used, not lost: the framework may accept it again or decline it
    assert not w.master.frameworks[fid].tasks
    assert not w.master.outbox
    w.accept(fid, [offer.id], [task("ok")])
    assert [s.state for s in updates(w.drain(), fid)] == []  # launched: the agent will report
    assert "ok" in w.master.frameworks[fid].tasks


def test_a_decline_with_an_absurd_filter_is_refused_and_its_offer_stays(w: World) -> None:
    w.register()
    fid = w.subscribe()
    [offer] = w.offers()[fid]
    with pytest.raises(CallError, match=r"filters\.refuse_seconds: nan"):
        w.decline(fid, [offer.id], refuse=math.nan)
    assert offer.id in w.master.offers


def test_acknowledgements_are_all_checked_before_any_is_forwarded(w: World) -> None:
    aid = w.register()
    fid = w.subscribe()
    w.launch(fid, "t1")
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING, b"u1")
    w.drain()
    acks = [tpb.Acknowledgement(agent_id=aid, task_id="t1", uuid=b"u1"), tpb.Acknowledgement(task_id="t/2", uuid=b"u")]
    with pytest.raises(CallError, match=r"^acknowledgements\[1\]\.task_id 't/2': '/' is not allowed in an id"):
        w.master.acknowledge(fid, acks)
    assert not messages(w.drain(), aid)


@pytest.mark.parametrize("weight", [math.inf, math.nan, -1.0, 0.0, 1e-300, 1e300])
def test_an_absurd_weight_changes_nothing(w: World, weight: float) -> None:
    with pytest.raises(CallError, match="weight of role 'eng'"):
        w.master.set_weights({"ok": 2.0, "eng": weight})
    assert w.master.weights == {}
    assert not w.master.outbox
