"""Simulated agents: N agents attached to a master over the real agent protocol (`AgentRegistry.Attach`, with an
agent's credentials), from one process, without starting any process on the host. Each answers pings, takes
RUN_TASKS and reports TASK_STARTING, TASK_RUNNING and, after the task's run time, TASK_FINISHED (TASK_KILLED on
KILL_TASKS), with reliable updates resent until acknowledged, as the Mesos paper emulated 50,000 slaves. A tool for
sizing a master (`aiomesos simulate-agents`) and the harness of bench.scale.

Built for batches: many Attach streams share each gRPC channel (`streams_per_channel`), the attaches in flight
at once are bounded (`attach_concurrency`: thousands of concurrent calls on one channel fail), and the updates
of one agent go out as one STATUS_UPDATES message per event-loop turn. The agents' behaviour is the pure
`scheduler_sdk.simulation.model`; this is the shell: streams, timers, the per-turn flush."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
import structlog

from aiomesos.v1 import agent_pb2, agent_pb2_grpc
from aiomesos.v1 import resources_pb2 as rpb
from scheduler_sdk._daemon.tasks import cancel_and_wait
from scheduler_sdk.backoff import Backoff
from scheduler_sdk.channels import open_channel
from scheduler_sdk.master_locator import MasterLocator
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.simulation.model import (
    RETRY_MIN,
    SIM_SECONDS_LABEL,
    Counters,
    SimAgentModel,
    agent_attributes,
    parse_spread,
)

__all__ = ["DEFAULT_RESOURCES", "SIM_SECONDS_LABEL", "SimulatedAgents"]

log = structlog.get_logger(__name__)
AgentMessage = agent_pb2.AgentMessage
MasterMessage = agent_pb2.MasterMessage

DEFAULT_RESOURCES = "cpus:8;mem:32768;disk:100000"
#: The master refuses these outright: a simulated agent so refused stops (as a real one does).
FATAL = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
VERSION = "aiomesos-simulated"
PONG = AgentMessage(type=AgentMessage.PONG)
#: Seconds between the scans for unacknowledged updates whose resend is due.
RETRY_SCAN = 1.0


@dataclass(eq=False, slots=True)
class _Agent:
    """One simulated agent's shell: its model, its stream, what waits to be written on it."""

    index: int
    info: rpb.AgentInfo
    model: SimAgentModel
    call: grpc.aio.StreamStreamCall | None = None
    queue: deque[AgentMessage] = field(default_factory=deque)
    writer: asyncio.Task[None] | None = None
    rejected: str = ""  # why the master refused it for good ("": it was not)


class SimulatedAgents:
    """`count` simulated agents attached to `master` (host:port, a list, or etcd://...: the leader at start).
    `config` carries the agent's credentials (an `agent/NAME` certificate; None: plaintext, an insecure master).
    Agents are named `hostname_prefix` + their index (from `first_index`, so that several processes share one
    master without clashing), have `resources` each and the attributes `attributes_spread` asks for."""

    def __init__(
        self,
        master: str,
        config: ClientConfig | None,
        count: int,
        *,
        resources: str = DEFAULT_RESOURCES,
        attributes_spread: Mapping[str, int] | str | None = None,
        task_seconds: float = 1.0,
        task_seconds_label: str = SIM_SECONDS_LABEL,
        hostname_prefix: str = "sim-",
        first_index: int = 0,
        streams_per_channel: int = 500,
        attach_concurrency: int = 64,
        answer_pings: bool = True,
        retry_min: float = RETRY_MIN,
        reattach_backoff_max: float = 10.0,
    ) -> None:
        if count < 0 or first_index < 0:
            raise ValueError(f"count ({count}) and first_index ({first_index}) must be >= 0")
        if streams_per_channel < 1 or attach_concurrency < 1:
            raise ValueError("streams_per_channel and attach_concurrency must be >= 1")
        if not math.isfinite(task_seconds) or task_seconds < 0:
            raise ValueError(f"task_seconds must be >= 0, not {task_seconds}")
        spread = parse_spread(attributes_spread) if isinstance(attributes_spread, str | None) else attributes_spread
        total = Resources.parse(resources).to_proto()  # ResourcesError (a ValueError) names what is wrong
        if not total:
            raise ValueError("resources must not be empty")
        self.master = master
        self.config = config
        self.count = count
        self.task_seconds = task_seconds
        self.task_seconds_label = task_seconds_label
        self.streams_per_channel = streams_per_channel
        self.answer_pings = answer_pings
        self.reattach_backoff_max = reattach_backoff_max
        self.counters = Counters()
        self.address = ""  # the master attached to
        self.pings = 0
        #: How late the latest pings arrived (seconds from the master queueing them to this process reading them).
        self.ping_lags: deque[float] = deque(maxlen=20_000)
        self.ping_interval = 0.0  # the interval in force, as the master's latest ping (or REGISTERED) said
        self._attached = 0
        self._clock = time.time
        self._agents = [
            _Agent(
                index=i,
                info=rpb.AgentInfo(
                    hostname=f"{hostname_prefix}{i}", resources=total, attributes=agent_attributes(i, spread)
                ),
                model=SimAgentModel(self.counters, self._clock, retry_min=retry_min),
            )
            for i in range(first_index, first_index + count)
        ]
        self._attach_slots = asyncio.Semaphore(attach_concurrency)
        self._channels: list[grpc.aio.Channel] = []
        self._dirty: set[_Agent] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._stopped = False

    # ------------------------------------------------------------------ what a caller reads
    @property
    def attached(self) -> int:
        """Agents attached now (REGISTERED and the stream open)."""
        return self._attached

    @property
    def tasks_running(self) -> int:
        return self.counters.running

    @property
    def tasks_launched(self) -> int:
        return self.counters.launched

    @property
    def tasks_finished(self) -> int:
        return self.counters.finished

    @property
    def tasks_killed(self) -> int:
        return self.counters.killed

    @property
    def rejected(self) -> list[str]:
        """Why the master refused agents for good (one line per agent refused)."""
        return [a.rejected for a in self._agents if a.rejected]

    def agent_ids(self) -> list[str]:
        return [a.model.agent_id for a in self._agents if a.model.agent_id]

    def stats(self) -> dict[str, float]:
        c = self.counters
        return {
            "agents": self.count,
            "attached": self._attached,
            "tasks_launched": c.launched,
            "tasks_running": c.running,
            "tasks_finished": c.finished,
            "tasks_killed": c.killed,
            "updates_sent": c.updates_sent,
            "updates_acknowledged": c.acknowledged,
            "pings": self.pings,
            "ping_interval_seconds": self.ping_interval,
        }

    async def wait_attached(self, n: int | None = None, timeout: float = 60.0) -> None:
        """Until `n` (default: all) agents are attached; TimeoutError says how many are. Raises RuntimeError at
        once when the master refused an agent for good (the reason is in the message)."""
        want = self.count if n is None else n
        deadline = time.monotonic() + timeout
        while self._attached < want:
            refused = self.rejected
            if refused:
                raise RuntimeError(f"the master refused {len(refused)} simulated agents: {refused[0]}")
            if self._runner is not None and self._runner.done():
                self._runner.result()
                raise RuntimeError("the simulated agents stopped")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._attached} of {want} simulated agents attached after {timeout:g} s")
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ life
    async def start(self) -> None:
        """Open the channels and start attaching (returns at once: `wait_attached` waits)."""
        if self._runner is not None:
            raise RuntimeError("already started")
        locator = MasterLocator(self.master, self.config)
        try:
            self.address = await locator.candidate()
        finally:
            await locator.close()
        channels = max(1, math.ceil(self.count / self.streams_per_channel))
        self._channels = [open_channel(self.address, self.config, master=True) for _ in range(channels)]
        self._runner = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Detach every agent (the master sees their streams end) and close the channels."""
        self._stopped = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        if self._runner is not None:
            await cancel_and_wait(self._runner)
        for agent in self._agents:
            for timer in agent.model.timers():
                if isinstance(timer, asyncio.TimerHandle):
                    timer.cancel()
        for channel in self._channels:
            await channel.close(grace=None)
        self._channels = []

    async def __aenter__(self) -> SimulatedAgents:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self._retry_loop())
            for agent in self._agents:
                tg.create_task(self._agent_life(agent))

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(RETRY_SCAN)
            for agent in self._agents:
                if agent.model.streams and agent.model.due():
                    self._mark(agent)

    async def _agent_life(self, agent: _Agent) -> None:
        """Attach, and again (with backoff) whenever the stream breaks, until the master refuses the agent."""
        backoff = Backoff(0.5, self.reattach_backoff_max)
        channel = self._channels[agent.index % len(self._channels)]
        while True:
            try:
                await self._attach_once(agent, channel)
                backoff.reset()
            except grpc.aio.AioRpcError as e:
                if e.code() in FATAL:
                    agent.rejected = f"{agent.info.hostname}: {e.code().name}: {e.details()}"
                    log.warning("simulated agent refused", hostname=agent.info.hostname, error=agent.rejected)
                    return
                log.debug("simulated agent's stream broke", hostname=agent.info.hostname, code=e.code().name)
            except ConnectionError as e:
                log.debug("simulated agent's stream ended", hostname=agent.info.hostname, error=str(e))
            except _Shutdown as e:
                agent.rejected = f"{agent.info.hostname}: shut down by the master: {e}"
                return
            await asyncio.sleep(backoff.next())

    async def _attach_once(self, agent: _Agent, channel: grpc.aio.Channel) -> None:
        stub = agent_pb2_grpc.AgentRegistryStub(channel)
        info = agent.info
        info.id = agent.model.agent_id
        register = AgentMessage(
            type=AgentMessage.REGISTER,
            register=AgentMessage.Register(
                agent_info=info, boot_id="sim", tasks=agent.model.registered_tasks(), version=VERSION
            ),
        )
        async with self._attach_slots:
            call = stub.Attach()
            await call.write(register)
            first = await call.read()
        if first is grpc.aio.EOF:
            await _raise_status(call)
            raise ConnectionError("the master closed the stream before REGISTERED")
        if first.type != MasterMessage.REGISTERED:
            call.cancel()
            raise ConnectionError(f"expected REGISTERED, got {MasterMessage.Type.Name(first.type)}")
        if first.registered.ping_interval_seconds:
            self.ping_interval = first.registered.ping_interval_seconds
        agent.call = call
        agent.queue.clear()
        agent.model.on_connected(first.registered.agent_id)
        if agent.model.out:
            self._mark(agent)
        self._attached += 1
        try:
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    await _raise_status(call)
                    raise ConnectionError("the master ended the stream")
                self._on_message(agent, message)
        finally:
            self._attached -= 1
            agent.call = None
            agent.model.on_disconnected()
            if agent.writer is not None:
                await cancel_and_wait(agent.writer)
            call.cancel()

    # ------------------------------------------------------------------ from the master
    def _on_message(self, agent: _Agent, message: agent_pb2.MasterMessage) -> None:
        model = agent.model
        kind = message.type
        if kind == MasterMessage.PING:
            self.pings += 1
            if message.HasField("ping"):
                if message.ping.sent_at:
                    self.ping_lags.append(self._clock() - message.ping.sent_at)
                if message.ping.interval_seconds:
                    self.ping_interval = message.ping.interval_seconds
            if self.answer_pings:
                self._write(agent, PONG)
            return
        if kind == MasterMessage.RUN_TASKS:
            loop = asyncio.get_running_loop()
            for item in message.run_tasks.tasks:
                seconds = model.run_task(item.framework.id, item.task, self.task_seconds, self.task_seconds_label)
                if seconds is not None:
                    key = (item.framework.id, item.task.task_id)
                    model.tasks[key].timer = loop.call_later(seconds, self._finish, agent, key)
        elif kind == MasterMessage.KILL_TASKS:
            for kill in message.kill_tasks.tasks:
                _cancel(model.kill(kill.framework_id, kill.task_id, kill.reason, kill.message))
        elif kind == MasterMessage.ACKNOWLEDGE:
            for ack in message.acknowledge.acknowledgements:
                model.acknowledge(ack.framework_id, ack.task_id, ack.uuid)
        elif kind == MasterMessage.SHUTDOWN_FRAMEWORK:
            for timer in model.shutdown_framework(message.shutdown_framework.framework_id):
                _cancel(timer)
        elif kind == MasterMessage.SHUTDOWN:
            raise _Shutdown(message.shutdown.message or "the master shut this agent down")
        if model.out:
            self._mark(agent)

    def _finish(self, agent: _Agent, key: tuple[str, str]) -> None:
        task = agent.model.tasks.get(key)
        if task is None or self._stopped:
            return
        task.timer = None
        agent.model.finish(key)
        if agent.model.out:
            self._mark(agent)

    # ------------------------------------------------------------------ to the master
    def _mark(self, agent: _Agent) -> None:
        """The agent has updates to send: they go in one message at the end of this loop turn."""
        self._dirty.add(agent)
        if self._flush_handle is None and not self._stopped:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        dirty, self._dirty = self._dirty, set()
        for agent in dirty:
            updates = agent.model.take_out()
            if updates and agent.call is not None:
                message = AgentMessage(type=AgentMessage.STATUS_UPDATES)
                message.status_updates.updates.extend(updates)
                self._write(agent, message)

    def _write(self, agent: _Agent, message: AgentMessage) -> None:
        agent.queue.append(message)
        if agent.writer is None and self._tg is not None and agent.call is not None:
            agent.writer = self._tg.create_task(self._drain(agent, agent.call))

    async def _drain(self, agent: _Agent, call: grpc.aio.StreamStreamCall) -> None:
        """Write the agent's queue out, one write at a time (a broken stream shows on the read side)."""
        try:
            while agent.queue:
                message = agent.queue.popleft()
                await call.write(message)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError, RuntimeError):
            pass
        finally:
            if agent.writer is asyncio.current_task():
                agent.writer = None


class _Shutdown(Exception):
    pass


def _cancel(timer: object) -> None:
    if isinstance(timer, asyncio.TimerHandle):
        timer.cancel()


async def _raise_status(call: grpc.aio.StreamStreamCall) -> None:
    """A stream the master ended with an error status: raise it (as AioRpcError), so that FATAL ones stop."""
    code = await call.code()
    if code != grpc.StatusCode.OK:
        raise grpc.aio.AioRpcError(
            code, await call.initial_metadata(), await call.trailing_metadata(), details=await call.details()
        )
