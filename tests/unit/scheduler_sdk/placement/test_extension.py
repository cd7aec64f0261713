"""The declared extension points: the shipped pieces have the capabilities they claim, and the run's indexed
answers to constraints equal what any `RunContext` gets from the protocol alone."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler_sdk.placement.engine import PlacementEngine
from scheduler_sdk.placement.extension import (
    ClusterProvider,
    Engine,
    FairShareQueue,
    HostView,
    IndexedRunContext,
    PlanningQueue,
    ShapeOnlyFitness,
    SteppedEngine,
    TimedQueue,
    attribute_values,
    counts_by_value,
    group_counts_by_value,
    values_among_hosts,
)
from scheduler_sdk.placement.fitness import BinPacking, by_shape
from scheduler_sdk.placement.model import Host, OfferSlice, RunningTask, TaskRequest
from scheduler_sdk.placement.providers import CallbackProvider, ProviderPerGroup
from scheduler_sdk.placement.queues import FifoQueue, TaskQueue
from scheduler_sdk.placement.run_state import RunState
from tests.unit.scheduler_sdk.placement.test_engine_properties import GROUPS, hosts_st


def test_the_shipped_pieces_have_the_capabilities_they_declare() -> None:
    engine = PlacementEngine()
    assert isinstance(engine, Engine) and isinstance(engine, SteppedEngine)
    for queue in (TaskQueue(), FifoQueue()):
        assert isinstance(queue, PlanningQueue) and isinstance(queue, TimedQueue)
    assert isinstance(TaskQueue(), FairShareQueue) and not isinstance(FifoQueue(), FairShareQueue)
    assert isinstance(CallbackProvider(up=lambda g, n: [], down=lambda g, h: None), ClusterProvider)
    assert isinstance(ProviderPerGroup({}), ClusterProvider)


def test_a_calculator_declares_shape_only_with_by_shape() -> None:
    class Declared:
        name = "declared"
        by_shape = True

        def __call__(self, task: TaskRequest, host: HostView) -> float:
            return 0.5

    class Denied(Declared):
        by_shape = False

    assert isinstance(Declared(), ShapeOnlyFitness) and by_shape(Declared())
    assert not by_shape(Denied()) and not by_shape(lambda t, h: 0.5)
    assert by_shape(BinPacking("mem"))


class _TwoMethods:
    """A `RunContext` with nothing but the protocol."""

    def __init__(self, run: RunState) -> None:
        self.run = run

    def hosts(self) -> list[HostView]:
        return self.run.hosts()

    def group_hosts(self, group: str) -> Mapping[str, int]:
        return self.run.group_hosts(group)


class _WithDefaults(_TwoMethods, IndexedRunContext):
    """An `IndexedRunContext` that keeps the default answers."""


@settings(max_examples=100, deadline=None)
@given(hosts=hosts_st(), assigned=st.lists(st.tuples(st.integers(0, 5), st.sampled_from(GROUPS)), max_size=6))
def test_indexed_answers_equal_the_protocol_alone(hosts: list[Host], assigned: list[tuple[int, str]]) -> None:
    run = RunState(sorted(hosts, key=lambda h: h.hostname))
    for i, (at, group) in enumerate(assigned):
        h = run.state(at % len(hosts))
        task = TaskRequest(f"x{i}", group=group)
        h.take(task, False)
        run.note(h, task)
        run.group_counts_by_value(group, "zone")  # caches kept across assignments must be refreshed
    plain, defaults = _TwoMethods(run), _WithDefaults(run)
    for attribute in ("zone", "type", "hostname"):
        assert run.attribute_values(attribute) == values_among_hosts(plain, attribute)
        assert attribute_values(run, attribute) == attribute_values(plain, attribute)
        assert defaults.attribute_values(attribute) == values_among_hosts(plain, attribute)
        for group in GROUPS[1:]:
            expected = counts_by_value(plain, group, attribute)
            assert dict(run.group_counts_by_value(group, attribute)) == expected
            assert dict(group_counts_by_value(plain, group, attribute)) == expected
            assert dict(defaults.group_counts_by_value(group, attribute)) == expected


def test_running_tasks_count_in_the_group_answers() -> None:
    hosts = [
        Host("a", attributes={"zone": "z1"}, offers=(OfferSlice("o1", cpus=1),), running=(RunningTask("r", "g"),)),
        Host("b", attributes={"zone": "z2"}),
    ]
    run = RunState(hosts)
    assert run.group_counts_by_value("g", "zone") == {"z1": 1}
    assert run.attribute_values("zone") == ("z1", "z2")
