"""The agent's attachment to the master: it dials the leading master (`MasterLocator`: one address, a list, or
etcd's leader record), registers with its id and tasks, and keeps one stream; when the master goes away or a
standby refuses it, it re-attaches to the next candidate with exponential backoff and jitter, forever (or until
the master rejects it outright)."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import structlog

from aiomesos.v1 import agent_pb2, agent_pb2_grpc
from mesos_agent.agent import Agent
from scheduler_sdk._daemon.tasks import cancel_and_wait
from scheduler_sdk.backoff import Backoff
from scheduler_sdk.channels import open_channel
from scheduler_sdk.master_locator import MasterLocator, NoMasterError
from scheduler_sdk.security.config import ClientConfig

log = structlog.get_logger(__name__)
AgentMessage = agent_pb2.AgentMessage
MasterMessage = agent_pb2.MasterMessage

FATAL = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
# Mesos' max_agent_ping_timeouts: a master silent for this many of its ping intervals is taken for lost (a
# partition drops packets silently: without this, only gRPC's keepalive would notice, half a minute later).
MISSED_PINGS = 5


def master_silence_limit(ping_interval: float) -> float | None:
    """Seconds without a message from the master after which the agent re-attaches (None: the master does not
    ping, wait forever)."""
    return ping_interval * MISSED_PINGS if ping_interval > 0 else None


class RejectedByMaster(Exception):
    pass


class MasterLink:
    def __init__(
        self,
        master: str,
        agent: Agent,
        *,
        boot_id: str,
        version: str,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        config: ClientConfig | None = None,
    ) -> None:
        self.master = master  # host:port, a comma-separated list, or etcd://h:p[,h:p]/prefix
        self.config = config  # TLS with the agent's own certificate; None: plaintext (an insecure cluster)
        self.locator = MasterLocator(master, config)  # raises ValueError for a bad `master`
        self.master_address = ""  # the master attached to now (or last)
        self.agent = agent
        self.boot_id = boot_id
        self.version = version
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.connected = asyncio.Event()
        self._queue: asyncio.Queue[AgentMessage] = asyncio.Queue()

    def send(self, message: AgentMessage) -> None:
        self._queue.put_nowait(message)

    def queued(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        try:
            await self._attachments()
        finally:
            await self.locator.close()

    async def _attachments(self) -> None:
        """Attach to the leading master, again and again: a broken stream or a standby's refusal sends the agent
        to the next candidate (the leader a standby named, the next address, etcd's leader), at once while there
        is one not yet tried, else after a backoff with jitter."""
        backoff = Backoff(self.backoff_min, self.backoff_max)
        while True:
            address, at_once = "", False
            try:
                address = await self.locator.candidate()
                await self._attach_once(address)
            except RejectedByMaster:
                raise
            except NoMasterError as e:
                log.warning("no master to attach to", master=self.master, error=str(e))
            except grpc.aio.AioRpcError as e:
                if e.code() in FATAL:
                    raise RejectedByMaster(e.details()) from None
                at_once = self.locator.failed(address, e)
                log.warning("master unreachable", master=address, code=e.code().name, details=e.details())
            except (ConnectionError, OSError) as e:
                at_once = self.locator.failed(address, e)
                log.warning("master unreachable", master=address, error=str(e))
            finally:
                if self.connected.is_set():
                    self.connected.clear()
                    backoff.reset()  # that attachment worked: back off afresh
                    self.agent.send = None
                    self.agent.on_disconnected()
            if not at_once:
                await asyncio.sleep(backoff.next())

    async def _attach_once(self, address: str) -> None:
        async with open_channel(address, self.config, master=True) as channel:
            stub = agent_pb2_grpc.AgentRegistryStub(channel)
            call = stub.Attach()
            await call.write(self.agent.register_message(self.boot_id, self.version))
            first = await call.read()
            if first is grpc.aio.EOF:
                raise ConnectionError("the master closed the stream before REGISTERED")
            if first.type != MasterMessage.REGISTERED:
                raise ConnectionError(f"expected REGISTERED, got {MasterMessage.Type.Name(first.type)}")
            # Drop whatever was queued for an earlier stream: status updates are resent by the manager.
            while not self._queue.empty():
                self._queue.get_nowait()
            self.agent.send = self.send
            self.agent.on_registered(first.registered.agent_id)
            self.locator.attached(address)
            self.master_address = address
            self.connected.set()
            log.info("attached to master", master=address, agent_id=first.registered.agent_id)
            writer = asyncio.create_task(self._write(call))
            silence = master_silence_limit(first.registered.ping_interval_seconds)
            try:
                while True:
                    try:
                        async with asyncio.timeout(silence):  # not wait_for: see scheduler_sdk._daemon.tasks
                            message = await call.read()
                    except TimeoutError:
                        call.cancel()
                        raise ConnectionError(f"no ping from the master in {silence:g} s") from None
                    if message is grpc.aio.EOF:
                        break
                    if message.type == MasterMessage.PING:
                        if message.ping.interval_seconds > 0:  # the interval in force grows with the cluster
                            silence = master_silence_limit(message.ping.interval_seconds)
                        continue
                    if message.type == MasterMessage.SHUTDOWN:  # drained and marked gone: stop, never come back
                        call.cancel()
                        raise RejectedByMaster(message.shutdown.message or "the master shut this agent down")
                    self.agent.on_master_message(message)
            finally:
                # A broken write shows on the read side as well; the writer's own error adds nothing. (A
                # cancellation of the link itself, meanwhile, must not be taken for the writer's: it ends the link.)
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    await cancel_and_wait(writer)
            raise ConnectionError("the master ended the stream")

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            message = await self._queue.get()
            await call.write(message)
