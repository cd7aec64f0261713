"""Helpers for end-to-end tests: poll with a deadline (never a fixed sleep) and a scheduler that records."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psutil

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.channels import open_channel
from scheduler_sdk.driver import Scheduler, SchedulerDriver
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import AgentClient, OperatorClient
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.config import ClientConfig, load_client_config

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T] | T], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = check()
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        last = result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check} (last: {last!r})")
        await asyncio.sleep(interval)


async def concurrently(*calls: Coroutine[Any, Any, T], limit: int = 4) -> list[T]:
    """The results of `calls`, in order, run at most `limit` at a time: for independent steps such as CLI
    subprocesses (each pays a Python start-up). The first failure cancels the rest and is raised."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await call

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(call)) for call in calls]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [t.result() for t in tasks]


class Recorder(Scheduler):
    """Records everything; offers go to a queue the test takes from (and must answer)."""

    def __init__(self, auto_decline: bool = False) -> None:
        self.offer_queue: asyncio.Queue[spb.Offer] = asyncio.Queue()
        self.statuses: list[tpb.TaskStatus] = []
        self.errors: list[str] = []
        self.rescinded: list[str] = []
        self.registrations: list[str] = []
        self.lost_agents: list[str] = []
        self._seen: set[bytes] = set()
        self.auto_decline = auto_decline

    async def registered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        self.registrations.append(framework_id)

    async def reregistered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        self.registrations.append(framework_id)

    async def disconnected(self, driver: SchedulerDriver) -> None:
        # Offers do not outlive the subscription they came on.
        while not self.offer_queue.empty():
            self.offer_queue.get_nowait()

    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        if self.auto_decline:
            driver.decline([o.id for o in offers], refuse_seconds=0.5)
            return
        for offer in offers:
            self.offer_queue.put_nowait(offer)

    async def offer_rescinded(self, driver: SchedulerDriver, offer_id: str) -> None:
        self.rescinded.append(offer_id)

    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        # Updates come at least once: a resend (its acknowledgement was slow) is the same update again.
        if status.uuid and status.uuid in self._seen:
            return
        self._seen.add(status.uuid)
        self.statuses.append(status)

    async def error(self, driver: SchedulerDriver, message: str) -> None:
        self.errors.append(message)

    async def agent_lost(self, driver: SchedulerDriver, agent_id: str) -> None:
        self.lost_agents.append(agent_id)

    def states(self, task_id: str) -> list[int]:
        return [s.state for s in self.statuses if s.task_id == task_id]

    def latest(self, task_id: str) -> tpb.TaskStatus | None:
        matching = [s for s in self.statuses if s.task_id == task_id]
        return matching[-1] if matching else None

    async def wait_state(self, task_id: str, states: set[int], timeout: float = 20.0) -> tpb.TaskStatus:
        def check() -> tpb.TaskStatus | None:
            s = self.latest(task_id)
            return s if s is not None and s.state in states else None

        names = ",".join(tpb.TaskState.Name(x) for x in states)  # type: ignore[arg-type]
        return await eventually(check, timeout, what=f"{task_id} in {names}")

    async def next_offer(self, timeout: float = 20.0, agent_id: str | None = None) -> spb.Offer:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no offer arrived in time")
            offer = await asyncio.wait_for(self.offer_queue.get(), left)
            if offer.id in self.rescinded:
                continue
            if agent_id is None or offer.agent_id == agent_id:
                return offer


def module_cluster_of(cluster: LocalCluster) -> Iterator[LocalCluster]:
    """A module-scoped fixture's body: start `cluster` (outside the tests' event loops: nothing of a cluster is
    bound to one, its daemons are processes), yield it, stop it, and check, once after the module's last test,
    that it left no cgroup behind."""
    try:
        asyncio.run(cluster.start())
        yield cluster
    finally:
        leftovers = asyncio.run(cluster.stop())
    assert leftovers == [], f"cgroups left behind: {leftovers}"


@contextlib.asynccontextmanager
async def framework(
    master: str,
    scheduler: Scheduler,
    *,
    name: str = "test",
    roles: Sequence[str] = (),
    failover_timeout: float = 0.0,
    framework_id: str = "",
    capabilities: Sequence[int] = (),
    teardown: bool = True,
    checkpoint: bool = False,
    configure: Callable[[rpb.FrameworkInfo], None] | None = None,
    config: ClientConfig | None = None,
) -> AsyncIterator[SchedulerDriver]:
    """A subscribed driver; `config`: whose credential it subscribes with (default: the session's operator)."""
    info = rpb.FrameworkInfo(
        name=name, roles=list(roles), failover_timeout=failover_timeout, id=framework_id, checkpoint=checkpoint
    )
    if configure is not None:
        configure(info)
    for cap in capabilities:
        info.capabilities.add(type=cap)  # type: ignore[arg-type]
    driver = SchedulerDriver(master, info, scheduler, backoff_max=0.5, config=config)
    runner = asyncio.create_task(driver.run())
    try:
        await eventually(lambda: driver.subscribed.is_set() or runner.done(), what="SUBSCRIBED")
        if runner.done():
            runner.result()
        yield driver
    finally:
        driver.stop(teardown=teardown)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner, 10)


def task(
    task_id: str, command: str, agent_id: str = "", cpus: float = 0.1, mem: float = 32, grace: float | None = None
) -> tpb.TaskInfo:
    info = tpb.TaskInfo(
        task_id=task_id,
        name=task_id,
        agent_id=agent_id,
        resources=Resources.of(cpus=cpus, mem=mem).to_proto(),
        command=rpb.CommandInfo(shell=True, value=command),
    )
    if grace is not None:
        info.kill_policy.grace_period.nanoseconds = int(grace * 1e9)
    return info


def master_channel(master: str, config: ClientConfig | None = None) -> grpc.aio.Channel:
    """A raw channel to the master with the session's client config (or `config`), for calls the SDK never makes."""
    return open_channel(master, config if config is not None else load_client_config(), master=True)


async def next_event(call: grpc.aio.StreamStreamCall, wanted: int) -> spb.Event:
    """The next event of type `wanted` on a raw subscription (others are skipped)."""
    while True:
        event = await asyncio.wait_for(call.read(), 10)
        assert event is not grpc.aio.EOF, "the master ended the subscription"
        if event.type == wanted:
            return event


async def agent_state(address: str) -> agent_pb2.AgentState:
    async with AgentClient(address) as client:
        return await client.state()


async def agents(master: str) -> list[Any]:
    async with OperatorClient(master) as client:
        return list((await client.agents()).agents)


def task_pid(task_id: str, work_dir: Path, command: str = "sleep") -> int | None:
    """The pid of the process of task `task_id` whose command line holds `command` (found by MESOS_TASK_ID), of a
    cluster whose work dir is `work_dir` (its sandbox, MESOS_SANDBOX, is in it): other tests (another pytest
    worker's, another session's) run tasks of the same name on this machine."""
    roots = {work_dir, work_dir.resolve()}
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            env = p.info["environ"] or {}
        except (psutil.Error, KeyError):
            continue
        if env.get("MESOS_TASK_ID") != task_id or command not in " ".join(p.info["cmdline"] or []):
            continue
        sandbox = Path(env.get("MESOS_SANDBOX", "/"))
        if any(sandbox.is_relative_to(root) for root in roots):
            return int(p.pid)
    return None


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie (the host's init may not reap orphans at once)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
