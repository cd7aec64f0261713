"""Operator.Subscribe: the operator event stream over gRPC (events.proto), the wire side of
mesos_master.events. The snapshot first (in pages of bounded size), then the batches the hub gives the
watcher, each cut to messages of bounded size; an empty message when nothing happened for HEARTBEAT_SECONDS.
Who may call it is who may call the Operator service; what each caller sees is filtered by view_frameworks,
as GetState is. The stream ends RESOURCE_EXHAUSTED for a watcher that fell too far behind, UNAVAILABLE when
the master stops or stops leading (a standby refuses it as it refuses every call)."""

from __future__ import annotations

import asyncio

import grpc

from aiomesos.v1 import events_pb2 as epb
from aiomesos.v1 import operator_pb2_grpc
from mesos_master.api.dispatch import Dispatcher
from mesos_master.events import MESSAGE_BYTES, EventsClosedError, Subscription, byte_batches, snapshot_pages
from scheduler_sdk._daemon.guard import Guard
from scheduler_sdk._daemon.tasks import cancel_and_wait

OperatorEvent = epb.OperatorEvent
#: A watcher hears at least this often (an empty message), so a dead connection shows on both sides.
HEARTBEAT_SECONDS = 15.0


class SubscribeServicer(operator_pb2_grpc.OperatorServicer):
    """Operator.Subscribe, the base of OperatorService (which has the term's dispatcher and guard)."""

    dispatcher: Dispatcher
    guard: Guard
    heartbeat_seconds = HEARTBEAT_SECONDS

    async def Subscribe(  # type: ignore[override]  # writes with context.write
        self, request: epb.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> None:
        dispatcher = self.dispatcher
        # What the core has queued is published first: the snapshot, taken next, already shows it.
        await dispatcher.flush()
        try:
            subscription = dispatcher.hub.subscribe(self.guard.caller())
        except EventsClosedError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"event stream: {e}")
            raise
        ended = asyncio.ensure_future(subscription.wait_ended())
        try:
            now = dispatcher.master.clock()
            for page in snapshot_pages(subscription.take_snapshot()):
                snapshot = OperatorEvent(type=OperatorEvent.SNAPSHOT, time=now, snapshot=page)
                if not await _write(context, epb.SubscribeResponse(events=[snapshot]), ended):
                    break
            else:
                await self._follow(context, subscription, ended)
            reason, overflowed = subscription.end_reason, subscription.overflowed
        finally:
            subscription.close()
            ended.cancel()
        code = grpc.StatusCode.RESOURCE_EXHAUSTED if overflowed else grpc.StatusCode.UNAVAILABLE
        await context.abort(code, f"event stream: {reason}")

    async def _follow(
        self, context: grpc.aio.ServicerContext, subscription: Subscription, ended: asyncio.Future[str]
    ) -> None:
        """Write the watcher's batches until its subscription ends."""
        while True:
            try:
                async with asyncio.timeout(self.heartbeat_seconds):  # not wait_for: see _daemon.tasks
                    batch = await anext(subscription)
            except TimeoutError:
                batch = []
            except StopAsyncIteration:
                return
            message = epb.SubscribeResponse(events=batch)
            if message.ByteSize() <= MESSAGE_BYTES:  # the batch fits one message (one size computed, not each)
                if not await _write(context, message, ended):
                    return
                continue
            for events in byte_batches(batch):
                if not await _write(context, epb.SubscribeResponse(events=events), ended):
                    return


#: Seconds a pending write may take to go out once the subscription has ended, before its status is sent.
WRITE_GRACE = 1.0


async def _write(context: grpc.aio.ServicerContext, message: epb.SubscribeResponse, ended: asyncio.Future[str]) -> bool:
    """Write one message; False (the write given up) if the subscription ends first: a watcher that reads
    nothing any more is told why it was dropped rather than left waiting on a full connection."""
    write = asyncio.ensure_future(context.write(message))
    try:
        await asyncio.wait((write, ended), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the call is cancelled (the watcher went away): the write goes with it
        write.cancel()
        raise
    if not write.done():
        # The message is with gRPC's core already: cancelling our wait does not take it back, and a status sent
        # while it is pending fails (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS) and leaves the watcher with no end.
        # Let it go out first, unless the watcher's connection stays full.
        try:
            async with asyncio.timeout(WRITE_GRACE):
                await asyncio.shield(write)
        except asyncio.CancelledError:  # the call is cancelled meanwhile: the write goes with it
            write.cancel()
            raise
        except Exception:  # TimeoutError (still pending), or the write failed: the stream ends either way
            pass
        if not write.done():
            await cancel_and_wait(write)
        return False
    write.result()
    return True
