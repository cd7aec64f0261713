"""The Scheduler service: one bidirectional stream per subscribed framework."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import structlog

from aiomesos.v1 import scheduler_pb2, scheduler_pb2_grpc
from mesos_master.api.dispatch import Connection, Dispatcher
from mesos_master.validation import CallError, DeniedError, call_framework_error
from scheduler_sdk._daemon.guard import Guard
from scheduler_sdk.enums import enum_name
from scheduler_sdk.resources import UNRESERVED

log = structlog.get_logger(__name__)
Call = scheduler_pb2.Call
Event = scheduler_pb2.Event


class SchedulerService(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(self, dispatcher: Dispatcher, heartbeat_interval: float, guard: Guard) -> None:
        self.dispatcher = dispatcher
        self.master = dispatcher.master
        self.heartbeat_interval = heartbeat_interval
        self.guard = guard

    async def Subscribe(  # type: ignore[override]  # writes with context.write
        self, request_iterator: AsyncIterator[scheduler_pb2.Call], context: grpc.aio.ServicerContext
    ) -> None:
        calls = aiter(request_iterator)
        try:
            first = await anext(calls)
        except StopAsyncIteration:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the stream ended before a SUBSCRIBE call")
        if first.type != Call.SUBSCRIBE:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the first call on a subscription must be SUBSCRIBE, not {enum_name(Call.Type, first.type)}",
            )
        info = first.subscribe.framework_info
        for role in sorted(set(info.roles)) or [UNRESERVED]:
            await self.guard.authorize(context, "register_frameworks", role)
        principal = self.guard.caller()
        try:
            framework_id = self.master.subscribe(info, str(principal) if principal else "")
        except CallError as e:
            code = grpc.StatusCode.PERMISSION_DENIED if isinstance(e, DeniedError) else grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, f"SUBSCRIBE rejected: {e}")
        conn: Connection[scheduler_pb2.Event] = Connection(framework_id)

        def prepare(event: scheduler_pb2.Event) -> None:
            if event.type == Event.SUBSCRIBED:
                event.subscribed.heartbeat_interval_seconds = self.heartbeat_interval

        await self.dispatcher.serve(
            self.dispatcher.frameworks,
            conn,
            context,
            lambda c: self._read(framework_id, calls, c),
            keepalive=Event(type=Event.HEARTBEAT),
            interval=self.heartbeat_interval,
            on_detach=lambda: self.master.disconnect_framework(framework_id),
            prepare=prepare,
        )
        await conn.abort_if_closed(context, "framework")

    async def _read(
        self, framework_id: str, calls: AsyncIterator[scheduler_pb2.Call], conn: Connection[scheduler_pb2.Event]
    ) -> None:
        try:
            async for call in calls:
                self._handle(framework_id, call)
                self.dispatcher.changed()
        except grpc.aio.AioRpcError:
            pass
        finally:
            conn.close("client closed its stream", None)

    def _handle(self, framework_id: str, call: scheduler_pb2.Call) -> None:
        wrong_framework = call_framework_error(call.framework_id, framework_id)
        if wrong_framework is not None:
            self.master.call_error(framework_id, wrong_framework)
            return
        if call.batch:
            for inner in call.batch:
                self._handle(framework_id, inner)
            if call.type == Call.UNKNOWN:
                return
        master = self.master
        try:
            match call.type:
                case Call.ACCEPT:
                    master.accept(framework_id, call.accept)
                case Call.DECLINE:
                    master.decline(framework_id, call.decline)
                    self.dispatcher.changed(allocate=True)
                case Call.REVIVE:
                    master.revive(framework_id, call.revive.roles)
                    self.dispatcher.changed(allocate=True)
                case Call.SUPPRESS:
                    master.suppress(framework_id, call.suppress.roles)
                case Call.KILL:
                    master.kill(framework_id, call.kill)
                case Call.ACKNOWLEDGE:
                    master.acknowledge(framework_id, call.acknowledge.acknowledgements)
                case Call.RECONCILE:
                    master.reconcile(framework_id, call.reconcile.tasks)
                case Call.MESSAGE:
                    master.framework_message(framework_id, call.message)
                case Call.UPDATE_FRAMEWORK:
                    master.update_framework(framework_id, call.update_framework.framework_info)
                    self.dispatcher.changed(allocate=True)
                case Call.TEARDOWN:
                    master.teardown(framework_id, "framework asked for teardown")
                case Call.SUBSCRIBE:
                    master.call_error(framework_id, "SUBSCRIBE is only valid as the first call of a stream")
                case Call.UNKNOWN if not call.batch:
                    master.call_error(framework_id, "call has no type")
                case _:
                    master.call_error(framework_id, f"unsupported call type {enum_name(Call.Type, call.type)}")
        except CallError as e:
            master.call_error(framework_id, f"{enum_name(Call.Type, call.type)} rejected: {e}")
