"""The agent's attachment to the master: it dials, registers, and keeps one stream; when the master goes away
it re-attaches with exponential backoff and jitter, forever (or until the master rejects it outright)."""

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
from scheduler_sdk.security.config import ClientConfig

log = structlog.get_logger(__name__)
AgentMessage = agent_pb2.AgentMessage
MasterMessage = agent_pb2.MasterMessage

FATAL = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


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
        self.master = master
        self.config = config  # TLS with the agent's own certificate; None: plaintext (an insecure cluster)
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
        backoff = Backoff(self.backoff_min, self.backoff_max)
        while True:
            try:
                await self._attach_once()
                backoff.reset()
            except RejectedByMaster:
                raise
            except grpc.aio.AioRpcError as e:
                if e.code() in FATAL:
                    raise RejectedByMaster(e.details()) from None
                log.warning("master unreachable", master=self.master, code=e.code().name, details=e.details())
            except (ConnectionError, OSError) as e:
                log.warning("master unreachable", master=self.master, error=str(e))
            finally:
                if self.connected.is_set():
                    self.connected.clear()
                    self.agent.send = None
                    self.agent.on_disconnected()
            await asyncio.sleep(backoff.next())

    async def _attach_once(self) -> None:
        async with open_channel(self.master, self.config, master=True) as channel:
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
            self.connected.set()
            log.info("attached to master", master=self.master, agent_id=first.registered.agent_id)
            writer = asyncio.create_task(self._write(call))
            try:
                while True:
                    message = await call.read()
                    if message is grpc.aio.EOF:
                        break
                    if message.type == MasterMessage.PING:
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
