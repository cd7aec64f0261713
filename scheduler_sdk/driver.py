"""The scheduler driver: what a framework runs to talk to the master.

    class MyScheduler(Scheduler):
        async def offers(self, driver, offers): ...
        async def status_update(self, driver, status): ...

    driver = SchedulerDriver("127.0.0.1:5050", FrameworkInfo(name="mine"), MyScheduler())
    await driver.run()          # until driver.stop() or a fatal error

A callback that raises aborts the driver, as Mesos' drivers do: the exception is logged with its traceback, the
driver stops without tearing the framework down (its tasks keep running for `failover_timeout`), and `run()`
raises that exception. The event it failed on is not acknowledged, so a restarted framework that subscribes with
its framework id is told again.

Calls (`accept`, `decline`, `acknowledge`...) are queued and sent together once per event-loop turn, so a
callback that launches a thousand tasks sends one message. Status updates are acknowledged after the
`status_update` callback returns (implicit acknowledgements), unless `implicit_acknowledgements=False`.
`master` is `host:port`, a comma-separated list of masters, or `etcd://h:p[,h:p]/prefix`: the driver subscribes
to the leading master, and when it goes away (or a standby refuses, naming the leader) re-subscribes with its
framework id to the next candidate, with backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Sequence

import grpc
import structlog

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import scheduler_pb2_grpc
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk._daemon.tasks import cancel_and_wait
from scheduler_sdk.backoff import Backoff
from scheduler_sdk.channels import open_channel
from scheduler_sdk.master_locator import MasterLocator, NoMasterError
from scheduler_sdk.offers import ResourcesLike, launch_op, reserve_op, task_info, unreserve_op
from scheduler_sdk.security.config import ClientConfig, load_client_config

__all__ = [
    "DriverError",
    "Scheduler",
    "SchedulerDriver",
    "launch_op",
    "reserve_op",
    "task_info",
    "unreserve_op",
]

log = structlog.get_logger(__name__)
MASTER_ENV = "AIOMESOS_MASTER"
Call = spb.Call
Event = spb.Event

FATAL_CODES = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
)
# How a subscription ends after stop(): closed (OK), torn down (FAILED_PRECONDITION) or hung up (CANCELLED).
_ENDED_BY_STOP = (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.CANCELLED)
# The callback an event goes to, for the log line of one that raised.
_CALLBACKS = {
    Event.OFFERS: "offers",
    Event.RESCIND: "offer_rescinded",
    Event.UPDATE: "status_update",
    Event.MESSAGE: "framework_message",
    Event.FAILURE: "agent_lost",
    Event.AGENT_DRAINING: "agent_draining",
    Event.ERROR: "error",
}


class DriverError(Exception):
    """The master refused this framework for good (the message says why)."""


class Scheduler:
    """Override what you need; every callback is awaited in event order."""

    async def registered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None: ...
    async def reregistered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None: ...
    async def disconnected(self, driver: SchedulerDriver) -> None: ...
    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        driver.decline([o.id for o in offers])

    async def offer_rescinded(self, driver: SchedulerDriver, offer_id: str) -> None: ...
    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None: ...
    async def framework_message(
        self, driver: SchedulerDriver, agent_id: str, executor_id: str, data: bytes
    ) -> None: ...
    async def agent_lost(self, driver: SchedulerDriver, agent_id: str) -> None: ...
    async def agent_draining(self, driver: SchedulerDriver, agent_id: str, deadline: float | None) -> None:
        """An agent this framework has tasks on is being drained: no more offers from it; what still runs there at
        `deadline` (unix seconds; None: no deadline) is killed (TASK_KILLED, REASON_AGENT_DRAINING). Told again
        on every resubscription while the drain lasts."""

    async def executor_lost(self, driver: SchedulerDriver, agent_id: str, executor_id: str, status: int) -> None: ...
    async def error(self, driver: SchedulerDriver, message: str) -> None:
        log.error("master reported an error", message=message)


class SchedulerDriver:
    def __init__(
        self,
        master: str,
        framework: rpb.FrameworkInfo,
        scheduler: Scheduler,
        *,
        implicit_acknowledgements: bool = True,
        backoff_min: float = 0.2,
        backoff_max: float = 10.0,
        max_reconnect_attempts: int | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        # How to reach the master and prove who we are: None means the config the CLI would use (--config is
        # the CLI's; here $AIOMESOS_CONFIG or ~/.config/aiomesos/config.toml), ClientConfig() plaintext.
        self.config = config if config is not None else load_client_config()
        # `host:port`, a comma-separated list, or etcd://h:p[,h:p]/prefix: the driver follows the leader. Empty:
        # $AIOMESOS_MASTER, else the client config's, as for the CLI.
        self.master = master or os.environ.get(MASTER_ENV, "") or (self.config.master if self.config else "")
        if not self.master:
            raise DriverError(f"no master address: give one, set ${MASTER_ENV}, or a client config that names it")
        try:
            self.locator = MasterLocator(self.master, self.config)
        except ValueError as e:
            raise DriverError(str(e)) from None
        self.master_address = ""  # the master subscribed to now (or last)
        self.framework = rpb.FrameworkInfo()
        self.framework.CopyFrom(framework)
        self.scheduler = scheduler
        self.implicit_acknowledgements = implicit_acknowledgements
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.max_reconnect_attempts = max_reconnect_attempts
        self.master_id = ""
        self.heartbeat_interval = 15.0  # until SUBSCRIBED says otherwise
        self.heartbeats = 0  # HEARTBEAT events received, for health checks of the framework itself
        # Stream messages each way (an event may carry many offers or updates, a message many calls).
        self.events_received = 0
        self.messages_sent = 0
        self.subscribed = asyncio.Event()
        self._pending: list[spb.Call] = []
        self._acks: list[tpb.Acknowledgement] = []
        self._wakeup = asyncio.Event()
        self._stopped = asyncio.Event()
        self._teardown = False
        self._call: grpc.aio.StreamStreamCall | None = None
        self.failure: Exception | None = None  # what a callback raised, which aborted the driver

    @property
    def framework_id(self) -> str:
        return self.framework.id

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Subscribe and deliver events until `stop()`; raises DriverError if the master refuses us, and the
        exception itself if a callback raises (the driver aborts: it stops without teardown)."""
        try:
            await self._subscriptions()
        except DriverError:
            if self.failure is None:
                raise
        finally:
            await self.locator.close()
        if self.failure is not None:
            raise self.failure

    def _abort(self, error: Exception, callback: str) -> None:
        """A callback raised: log it with its traceback and stop (no teardown); run() raises it. What was queued
        before is still sent; no event after it is delivered."""
        if self.failure is None:
            self.failure = error
            log.error(
                "scheduler callback raised: the driver aborts",
                callback=callback,
                framework_id=self.framework.id,
                exc_info=error,
            )
        self.stop(teardown=self._teardown)  # a teardown the callback asked for before it raised still happens

    async def _subscriptions(self) -> None:
        """Subscribe to the leading master, again and again: a broken stream or a standby's refusal sends the
        driver to the next candidate (the leader a standby named, the next address, etcd's leader), at once while
        there is one not yet tried, else after a backoff with jitter."""
        attempts = 0
        backoff = Backoff(self.backoff_min, self.backoff_max)
        ever_subscribed = False
        while not self._stopped.is_set():
            address, at_once = "", False
            try:
                address = await self.locator.candidate()
                await self._session(address, ever_subscribed)
                attempts = 0
                backoff.reset()
                continue  # ended by stop()
            except NoMasterError as e:
                why = str(e)
                log.warning("no master to subscribe to", master=self.master, error=why)
            except grpc.aio.AioRpcError as e:
                if e.code() in FATAL_CODES:
                    raise DriverError(e.details() or e.code().name) from None
                why = f"cannot reach the master at {address}: {e.details()}"
                at_once = self.locator.failed(address, e)
                log.warning("master unreachable", master=address, code=e.code().name, details=e.details())
            finally:
                ever_subscribed = ever_subscribed or bool(self.framework.id)
                if self.subscribed.is_set():
                    self.subscribed.clear()
                    attempts = 0  # that subscription worked: count and back off afresh
                    backoff.reset()
                    try:
                        await self.scheduler.disconnected(self)
                    except Exception as e:
                        self._abort(e, "disconnected")
            if at_once:  # another candidate to try before this attempt has failed
                continue
            attempts += 1
            if self.max_reconnect_attempts is not None and attempts > self.max_reconnect_attempts:
                raise DriverError(why)
            if not self._stopped.is_set():
                await _sleep_or(self._stopped, backoff.next())

    def stop(self, *, teardown: bool = False) -> None:
        """Stop the driver; with `teardown`, tell the master to remove the framework and kill its tasks."""
        self._teardown = teardown
        self._stopped.set()
        self._wakeup.set()

    async def _session(self, address: str, resubscribing: bool) -> None:
        """One subscription. The reader reads until the stream ends; after `stop()` the writer sends what is
        queued (and TEARDOWN), half-closes, and cancels the call if the master has not ended it in time.
        Neither side is ever cancelled mid-operation: cancelling a read or write cancels the whole RPC."""
        async with open_channel(address, self.config, master=True) as channel:
            stub = scheduler_pb2_grpc.SchedulerStub(channel)
            call = stub.Subscribe()
            await call.write(Call(type=Call.SUBSCRIBE, subscribe=Call.Subscribe(framework_info=self.framework)))
            writer = asyncio.create_task(self._write(call))
            try:
                await self._read(call, resubscribing)
            finally:
                # A failed write shows on the read side too; the writer's own error adds nothing. (cancel_and_wait,
                # not suppress(CancelledError): a cancellation of run() itself must not be taken for the writer's.)
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    await cancel_and_wait(writer)

    async def _read(self, call: grpc.aio.StreamStreamCall, resubscribing: bool) -> None:
        while True:
            try:
                # A master that sends nothing, not even HEARTBEATs, for three intervals is gone. (asyncio.timeout,
                # not wait_for, which on Python 3.11 can lose a cancellation of run().)
                async with asyncio.timeout(3 * self.heartbeat_interval):
                    event = await call.read()
            except TimeoutError:
                call.cancel()
                raise grpc.aio.AioRpcError(
                    grpc.StatusCode.UNAVAILABLE, None, None, details="no heartbeat from the master"
                ) from None
            except grpc.aio.AioRpcError as e:
                if self._stopped.is_set() and e.code() in _ENDED_BY_STOP:
                    return
                raise
            if event is grpc.aio.EOF:
                code = await call.code()
                if self._stopped.is_set() and code in _ENDED_BY_STOP:
                    return
                if code != grpc.StatusCode.OK:
                    raise grpc.aio.AioRpcError(code, None, None, details=await call.details())
                raise grpc.aio.AioRpcError(
                    grpc.StatusCode.UNAVAILABLE, None, None, details="the master ended the stream"
                )
            self.events_received += 1
            if self.failure is not None:
                continue  # aborted: nothing more is delivered (nor acknowledged) while the stream winds down
            try:
                await self._dispatch(event, resubscribing)
            except Exception as e:
                self._abort(e, _callback_name(event, resubscribing))

    async def _dispatch(self, event: spb.Event, resubscribing: bool) -> None:
        s = self.scheduler
        match event.type:
            case Event.SUBSCRIBED:
                self.framework.id = event.subscribed.framework_id
                if event.subscribed.heartbeat_interval_seconds > 0:
                    self.heartbeat_interval = event.subscribed.heartbeat_interval_seconds
                self.master_id = event.subscribed.master_id
                self.master_address = self.locator.current
                self.locator.attached(self.master_address)
                self.subscribed.set()
                log.info(
                    "subscribed to master",
                    master=self.master_address,
                    master_id=self.master_id,
                    framework_id=self.framework.id,
                    resubscribed=resubscribing,
                )
                if resubscribing:
                    await s.reregistered(self, self.framework.id, self.master_id)
                else:
                    await s.registered(self, self.framework.id, self.master_id)
            case Event.OFFERS:
                await s.offers(self, list(event.offers.offers))
            case Event.RESCIND:
                for offer_id in event.rescind.offer_ids:
                    await s.offer_rescinded(self, offer_id)
            case Event.UPDATE:
                for status in event.update.statuses:  # a raise leaves this one and the rest unacknowledged
                    await s.status_update(self, status)
                    if self.implicit_acknowledgements and status.uuid:
                        self.acknowledge(status)
            case Event.MESSAGE:
                m = event.message
                await s.framework_message(self, m.agent_id, m.executor_id, m.data)
            case Event.FAILURE:
                f = event.failure
                if f.executor_id:
                    await s.executor_lost(self, f.agent_id, f.executor_id, f.status)
                else:
                    await s.agent_lost(self, f.agent_id)
            case Event.AGENT_DRAINING:
                d = event.agent_draining
                await s.agent_draining(self, d.agent_id, d.deadline if d.HasField("deadline") else None)
            case Event.ERROR:
                await s.error(self, event.error.message)
            case Event.HEARTBEAT:
                self.heartbeats += 1

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:
        while not self._stopped.is_set():
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(0)  # let this turn's calls gather into one message
            await self._flush(call)
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await self._flush(call)  # what was queued while the last write was in flight
            if self._teardown and self.framework.id:
                await call.write(Call(type=Call.TEARDOWN, framework_id=self.framework.id))
            await call.done_writing()
        await asyncio.sleep(3.0)
        call.cancel()

    async def _flush(self, call: grpc.aio.StreamStreamCall) -> None:
        if self._acks:
            acks, self._acks = self._acks, []
            self._pending.append(Call(type=Call.ACKNOWLEDGE, acknowledge=Call.Acknowledge(acknowledgements=acks)))
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        message = batch[0] if len(batch) == 1 else Call(batch=batch)
        message.framework_id = self.framework.id
        self.messages_sent += 1
        await call.write(message)

    # ------------------------------------------------------------------ calls
    def _queue(self, call: spb.Call) -> None:
        call.framework_id = self.framework.id
        self._pending.append(call)
        self._wakeup.set()

    def accept(
        self,
        offer_ids: Iterable[str],
        tasks: Iterable[tpb.TaskInfo],
        refuse_seconds: float | None = None,
    ) -> None:
        """Launch `tasks` on the offers (all from one agent); what they leave unused returns to the master. No
        tasks: the offers are declined."""
        tasks = list(tasks)
        if not tasks:
            self.decline(offer_ids, refuse_seconds)
            return
        self.accept_operations(offer_ids, [launch_op(tasks)], refuse_seconds)

    def accept_operations(
        self,
        offer_ids: Iterable[str],
        operations: Iterable[spb.Offer_Operation],
        refuse_seconds: float | None = None,
    ) -> None:
        """Accept offers (all from one agent) with operations carried out in order (`launch_op`, `reserve_op`,
        `unreserve_op` of scheduler_sdk.offers): a LAUNCH may use what a RESERVE before it reserved. An
        operation the master refuses comes back as an `error` event (a refused LAUNCH: TASK_ERROR updates)."""
        accept = Call.Accept(offer_ids=list(offer_ids), operations=list(operations), filters=_filters(refuse_seconds))
        self._queue(Call(type=Call.ACCEPT, accept=accept))

    def reserve(self, offer_ids: Iterable[str], resources: ResourcesLike, refuse_seconds: float | None = None) -> None:
        """Reserve offered unreserved resources for the role each names, e.g. `Resources.of(role="eng", cpus=1)`
        (a role of this framework, the offers' allocation role or one below it). They come back in later offers
        under that role; the rest of the offers returns to the master."""
        self.accept_operations(offer_ids, [reserve_op(resources)], refuse_seconds)

    def unreserve(
        self, offer_ids: Iterable[str], resources: ResourcesLike, refuse_seconds: float | None = None
    ) -> None:
        """Give offered, dynamically reserved resources (`Resources.from_proto(offer.resources).reserved("eng")`)
        back to the unreserved pool."""
        self.accept_operations(offer_ids, [unreserve_op(resources)], refuse_seconds)

    def launch(self, offer_id: str, tasks: Iterable[tpb.TaskInfo], refuse_seconds: float | None = None) -> None:
        """`accept` for a single offer."""
        self.accept([offer_id], tasks, refuse_seconds)

    def decline(self, offer_ids: Iterable[str], refuse_seconds: float | None = None) -> None:
        ids = list(offer_ids)
        if ids:
            self._queue(Call(type=Call.DECLINE, decline=Call.Decline(offer_ids=ids, filters=_filters(refuse_seconds))))

    def revive(self, roles: Iterable[str] = ()) -> None:
        self._queue(Call(type=Call.REVIVE, revive=Call.Revive(roles=list(roles))))

    def suppress(self, roles: Iterable[str] = ()) -> None:
        self._queue(Call(type=Call.SUPPRESS, suppress=Call.Suppress(roles=list(roles))))

    def kill(self, task_id: str, agent_id: str = "", grace_period: float | None = None) -> None:
        kill = Call.Kill(task_id=task_id, agent_id=agent_id)
        if grace_period is not None:
            kill.kill_policy.grace_period.nanoseconds = int(grace_period * 1e9)
        self._queue(Call(type=Call.KILL, kill=kill))

    def acknowledge(self, status: tpb.TaskStatus) -> None:
        """Acknowledge an update (needed only with implicit_acknowledgements=False)."""
        if not status.uuid:
            return
        self._acks.append(tpb.Acknowledgement(agent_id=status.agent_id, task_id=status.task_id, uuid=status.uuid))
        self._wakeup.set()

    def reconcile(self, tasks: Iterable[tuple[str, str]] = ()) -> None:
        """Ask for the latest state of (task id, agent id) pairs; none: of every task the master knows."""
        items = [Call.Reconcile.Task(task_id=t, agent_id=a) for t, a in tasks]
        self._queue(Call(type=Call.RECONCILE, reconcile=Call.Reconcile(tasks=items)))

    def message(self, agent_id: str, executor_id: str, data: bytes, path: str = "") -> None:
        """Send `data` to an executor on an agent. With `path`, to a command task (`executor_id` is its task id):
        the agent writes `data` to the file `path` of the task's sandbox, atomically (the task sees the whole old
        file or the whole new one). `path` is a plain file name (letters, digits, '.', '_' and '-'; at most 255,
        not '.' or '..'): the master answers another with an `error` event naming `message.path`. A message for a
        task that is not running on that agent is dropped there (and logged)."""
        message = Call.Message(agent_id=agent_id, executor_id=executor_id, data=data, path=path)
        self._queue(Call(type=Call.MESSAGE, message=message))

    def update_framework(self, framework: rpb.FrameworkInfo) -> None:
        """Change roles, capabilities, offer constraints or minimum offer sizes without resubscribing."""
        info = rpb.FrameworkInfo()
        info.CopyFrom(framework)
        info.id = self.framework.id
        self.framework.CopyFrom(info)
        self._queue(Call(type=Call.UPDATE_FRAMEWORK, update_framework=Call.Subscribe(framework_info=info)))

    def teardown(self) -> None:
        self.stop(teardown=True)


def _filters(refuse_seconds: float | None) -> spb.Filters:
    if refuse_seconds is None:
        return spb.Filters()
    return spb.Filters(refuse_seconds=refuse_seconds)


def _callback_name(event: spb.Event, resubscribing: bool) -> str:
    if event.type == Event.SUBSCRIBED:
        return "reregistered" if resubscribing else "registered"
    if event.type == Event.FAILURE and event.failure.executor_id:
        return "executor_lost"
    return _CALLBACKS.get(event.type, Event.Type.Name(event.type))


async def _sleep_or(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
