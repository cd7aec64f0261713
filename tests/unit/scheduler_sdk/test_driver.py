"""The driver against an in-process fake master (real gRPC, plaintext): what a callback that raises does, and the
offer-operation calls' wire shape."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
from structlog.testing import capture_logs

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import scheduler_pb2_grpc
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import DriverError, Scheduler, SchedulerDriver
from scheduler_sdk.offers import launch_op, reserve_op, task_info
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.config import ClientConfig

Event = spb.Event
Call = spb.Call


class FakeMaster(scheduler_pb2_grpc.SchedulerServicer):
    """Answers SUBSCRIBE with SUBSCRIBED and then `events`; records every call; ends when the driver half-closes."""

    def __init__(self, events: Sequence[spb.Event]) -> None:
        self.events = list(events)
        self.calls: list[spb.Call] = []
        self.subscribes = 0

    async def Subscribe(
        self, request_iterator: AsyncIterator[spb.Call], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[spb.Event]:
        first = await anext(aiter(request_iterator))
        assert first.type == Call.SUBSCRIBE
        self.subscribes += 1
        subscribed = Event.Subscribed(framework_id="fw-1", master_id="m-1", heartbeat_interval_seconds=15)
        yield Event(type=Event.SUBSCRIBED, subscribed=subscribed)
        for event in self.events:
            yield event
        async for call in request_iterator:
            self.calls.extend(call.batch if call.batch else [call])

    def of_type(self, kind: int) -> list[spb.Call]:
        return [c for c in self.calls if c.type == kind]


async def serve(master: FakeMaster) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(master, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def update(task_id: str, uuid: bytes) -> spb.Event:
    status = tpb.TaskStatus(task_id=task_id, agent_id="a-1", state=tpb.TASK_RUNNING, uuid=uuid)
    return Event(type=Event.UPDATE, update=Event.Update(statuses=[status]))


def offer(offer_id: str) -> spb.Event:
    o = spb.Offer(id=offer_id, agent_id="a-1", resources=Resources.of(cpus=2, mem=256).to_proto())
    return Event(type=Event.OFFERS, offers=Event.Offers(offers=[o]))


class Boom(Exception):
    pass


class RaisesOnSecondUpdate(Scheduler):
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        self.seen.append(status.task_id)
        if status.task_id == "t2":
            driver.kill("t1")  # queued before the raise: still sent
            raise Boom("a bug in the framework")


async def run_driver(master: FakeMaster, scheduler: Scheduler, callback: str) -> SchedulerDriver:
    """Run a driver whose `callback` raises Boom: run() raises it, with the callback in its traceback, after
    logging it (with the exception, which the renderer prints as a traceback)."""
    server, address = await serve(master)
    try:
        driver = SchedulerDriver(address, rpb.FrameworkInfo(name="t"), scheduler, config=ClientConfig())
        with capture_logs() as logs, pytest.raises(Boom, match="a bug in the framework") as raised:
            await asyncio.wait_for(driver.run(), timeout=20)
        assert driver.failure is raised.value
        assert callback in [frame.name for frame in traceback.extract_tb(raised.value.__traceback__)]
        (logged,) = [e for e in logs if e["event"] == "scheduler callback raised: the driver aborts"]
        assert logged["callback"] == callback and logged["exc_info"] is raised.value
        assert logged["log_level"] == "error"
        return driver
    finally:
        await server.stop(grace=None)


async def test_a_raising_callback_aborts_the_driver_and_run_raises_it() -> None:
    events = [update("t1", b"u1"), update("t2", b"u2"), update("t3", b"u3"), offer("o-late")]
    master = FakeMaster(events)
    scheduler = RaisesOnSecondUpdate()
    await run_driver(master, scheduler, "status_update")
    # Nothing is delivered after the failure, t2 is not acknowledged (the agent redelivers it after a failover),
    # what was handled (t1) and what was queued before the raise (the kill) are sent, and no TEARDOWN.
    assert scheduler.seen == ["t1", "t2"]
    acked = [a.task_id for c in master.of_type(Call.ACKNOWLEDGE) for a in c.acknowledge.acknowledgements]
    assert acked == ["t1"]
    assert [c.kill.task_id for c in master.of_type(Call.KILL)] == ["t1"]
    assert not master.of_type(Call.TEARDOWN)
    assert master.subscribes == 1  # aborted, not resubscribed


class RaisesInOffers(Scheduler):
    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        raise Boom("a bug in the framework")


async def test_an_offers_callback_that_raises_ends_run_with_it() -> None:
    master = FakeMaster([offer("o-1"), offer("o-2")])
    await run_driver(master, RaisesInOffers(), "offers")
    assert not master.of_type(Call.DECLINE) and not master.of_type(Call.ACCEPT)


class TearsDownThenRaises(Scheduler):
    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        driver.stop(teardown=True)
        raise Boom("a bug in the framework")


async def test_a_teardown_asked_for_before_a_callback_raises_still_happens() -> None:
    master = FakeMaster([offer("o-1")])
    await run_driver(master, TearsDownThenRaises(), "offers")
    assert len(master.of_type(Call.TEARDOWN)) == 1


class Operations(Scheduler):
    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        (o,) = offers
        eng = Resources.of(role="eng", cpus=1)
        task = tpb.TaskInfo(task_id="t", agent_id=o.agent_id, resources=eng.to_proto())
        driver.reserve([o.id], eng, refuse_seconds=1)
        driver.unreserve([o.id], eng.to_proto())
        driver.accept_operations([o.id], [reserve_op(eng), launch_op([task])])
        driver.stop()


async def test_offer_operations_are_accepts_with_ordered_operations() -> None:
    master = FakeMaster([offer("o-1")])
    server, address = await serve(master)
    try:
        driver = SchedulerDriver(address, rpb.FrameworkInfo(name="t"), Operations(), config=ClientConfig())
        await asyncio.wait_for(driver.run(), timeout=20)
    finally:
        await server.stop(grace=None)
    Op = spb.Offer_Operation
    accepts = master.of_type(Call.ACCEPT)
    assert [[op.type for op in c.accept.operations] for c in accepts] == [
        [Op.RESERVE],
        [Op.UNRESERVE],
        [Op.RESERVE, Op.LAUNCH],
    ]
    assert all(list(c.accept.offer_ids) == ["o-1"] and c.framework_id == "fw-1" for c in accepts)
    assert accepts[0].accept.filters.HasField("refuse_seconds") and accepts[0].accept.filters.refuse_seconds == 1
    assert not accepts[1].accept.filters.HasField("refuse_seconds")
    reserved = Resources.from_proto(accepts[0].accept.operations[0].reserve.resources)
    assert reserved == Resources.of(role="eng", cpus=1)


def test_the_master_defaults_to_aiomesos_master_then_the_client_config(monkeypatch: pytest.MonkeyPatch) -> None:
    info, config = rpb.FrameworkInfo(name="t"), ClientConfig(master="10.0.0.2:5050")
    monkeypatch.setenv("AIOMESOS_MASTER", "10.0.0.1:5050")
    assert SchedulerDriver("", info, Scheduler(), config=config).master == "10.0.0.1:5050"
    assert SchedulerDriver("10.0.0.3:5050", info, Scheduler(), config=config).master == "10.0.0.3:5050"
    monkeypatch.delenv("AIOMESOS_MASTER")
    assert SchedulerDriver("", info, Scheduler(), config=config).master == "10.0.0.2:5050"
    with pytest.raises(DriverError, match=r"no master address: give one, set \$AIOMESOS_MASTER"):
        SchedulerDriver("", info, Scheduler(), config=ClientConfig())


def test_task_info_builds_a_task_for_the_offers_agent() -> None:
    o = spb.Offer(id="o-1", agent_id="a-7")
    shell = task_info(o, "t1", "echo $MESOS_TASK_ID", Resources.of(cpus=0.5), labels=rpb.Labels())
    assert (shell.task_id, shell.name, shell.agent_id) == ("t1", "t1", "a-7")
    assert shell.command.shell and shell.command.value == "echo $MESOS_TASK_ID"
    assert Resources.from_proto(shell.resources) == Resources.of(cpus=0.5)
    argv = task_info(o, "t2", ["/bin/echo", "hi"], Resources.of(cpus=0.5).to_proto(), name="greeter")
    assert not argv.command.shell and argv.command.value == "/bin/echo"
    assert list(argv.command.arguments) == ["/bin/echo", "hi"] and argv.name == "greeter"
    with pytest.raises(ValueError, match="empty argv"):
        task_info(o, "t3", [], Resources.of(cpus=0.5))


def test_the_package_exports_what_a_framework_needs() -> None:
    import scheduler_sdk
    from scheduler_sdk import driver, offers, states

    assert scheduler_sdk.SchedulerDriver is driver.SchedulerDriver and scheduler_sdk.task_info is offers.task_info
    assert scheduler_sdk.TERMINAL_STATES is states.TERMINAL_STATES
    assert set(scheduler_sdk.__all__) == {"Resources", "ResourcesError", *scheduler_sdk._LAZY}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = scheduler_sdk.nope  # type: ignore[attr-defined]


class RaisesWhenRegistered(Scheduler):
    async def registered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        raise Boom("a bug in the framework")


async def test_a_registered_callback_that_raises_is_named_in_the_log() -> None:
    await run_driver(FakeMaster([]), RaisesWhenRegistered(), "registered")
