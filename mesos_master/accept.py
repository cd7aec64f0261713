"""ACCEPT: a framework uses offers, with its operations carried out in order (LAUNCH, RESERVE, UNRESERVE).
What the operations leave of the offers goes back to the allocator, refused for the accept's filter."""

from __future__ import annotations

from collections.abc import Iterable

from aiomesos.v1 import agent_pb2, scheduler_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.bounds import check_accept
from mesos_master.offers import refuse_seconds
from mesos_master.records import AgentRecord, Framework, Offer, Task
from mesos_master.reservations import ReservationTransitions
from mesos_master.tasks import TaskTransitions
from mesos_master.validation import CallError, DeniedError, accept_offers, launch_resources
from scheduler_sdk.enums import enum_name
from scheduler_sdk.resources import UNRESERVED, Resources

TaskStatus = tpb.TaskStatus
OfferOperation = scheduler_pb2.Offer_Operation
MasterMessage = agent_pb2.MasterMessage


class AcceptTransitions(ReservationTransitions, TaskTransitions):
    def accept(self, framework_id: str, call: scheduler_pb2.Call.Accept) -> None:
        fw = self._framework(framework_id)
        check_accept(call)  # the call's shape, before any offer is touched: refused whole, the offers stay
        now = self.clock()
        valid, problems = accept_offers(framework_id, call.offer_ids, self.offers)
        for offer in valid:
            self._remove_offer(offer)
        agent_ids = {o.agent_id for o in valid}
        agent = self.agents.get(next(iter(agent_ids))) if len(agent_ids) == 1 else None
        if not problems and (agent is None or not agent.connected):
            problems.append("the offers' agent is no longer attached")
        if problems:
            self._refuse_accept(fw, call, valid, "; ".join(problems), now)
            return
        assert agent is not None
        self._carry_out_operations(fw, agent, valid, call.operations, refuse_seconds(call.filters), now)

    def _refuse_accept(
        self, fw: Framework, call: scheduler_pb2.Call.Accept, valid: list[Offer], message: str, now: float
    ) -> None:
        """The offers cannot be used: every task to launch is TASK_DROPPED, the valid offers go back."""
        launches = [t for op in call.operations if op.type == OfferOperation.LAUNCH for t in op.launch.task_infos]
        for task in launches:
            self._reply(
                fw, task.task_id, tpb.TASK_DROPPED, TaskStatus.REASON_INVALID_OFFERS, message, task.agent_id, now
            )
        for offer in valid:
            self.allocator.recover_resources(fw.id, offer.agent_id, offer.resources, None, now, role=offer.role)

    def _carry_out_operations(
        self,
        fw: Framework,
        agent: AgentRecord,
        offers: list[Offer],
        operations: Iterable[scheduler_pb2.Offer_Operation],
        refuse: float,
        now: float,
    ) -> None:
        role = offers[0].role
        offered = Resources.empty()
        for offer in offers:
            offered = offered + offer.resources
        pool = offered
        reservations_changed = False
        reserved_here = Resources.empty()  # what this accept's RESERVE operations took so far
        launched: list[Task] = []
        launched_ids: set[str] = set()
        denials: dict[str, str | None] = {}  # user -> why run_tasks is denied (None: allowed), asked once per accept
        for operation in operations:  # in order: a LAUNCH may use what a RESERVE before it reserved
            if operation.type in (OfferOperation.RESERVE, OfferOperation.UNRESERVE):
                try:
                    pool, reserved_here = self._apply_reservation_operation(
                        fw, agent, operation, pool, role, reserved_here
                    )
                    reservations_changed = True
                except CallError as e:
                    self._error(fw, f"{enum_name(OfferOperation.Type, operation.type)} rejected: {e}")
                continue
            if operation.type != OfferOperation.LAUNCH:
                self._error(fw, f"unsupported offer operation type {operation.type}: LAUNCH, RESERVE, UNRESERVE are")
                continue
            for info in operation.launch.task_infos:
                task = self._launch(fw, agent, info, pool, role, launched_ids, denials, now)
                if task is not None:
                    pool = pool.subtract_clamped(task.resources)  # within the pool: `_launch` checked it
                    launched_ids.add(task.task_id)
                    launched.append(task)
        self._give_back_unused(fw, agent, offered, pool, launched, role, reservations_changed, refuse, now)

    def _launch(
        self,
        fw: Framework,
        agent: AgentRecord,
        info: tpb.TaskInfo,
        pool: Resources,
        offer_role: str,
        launched_ids: set[str],
        denials: dict[str, str | None],
        now: float,
    ) -> Task | None:
        """Launch one task from the pool (None: it is invalid, and its framework was told TASK_ERROR). `denials`
        holds the run_tasks decisions of this accept so far, by user: the same principal running tasks as the same
        user is one decision (and one audit line) per accept, however many tasks it launches."""
        resources = launch_resources(info, agent.id, pool, fw.tasks, launched_ids)
        if isinstance(resources, str):
            self._reply(fw, info.task_id, tpb.TASK_ERROR, TaskStatus.REASON_TASK_INVALID, resources, agent.id, now)
            return None
        user = info.command.user or fw.info.user  # empty: the agent's --default-user, never root
        if user:
            if user not in denials:
                try:
                    self._authorize(fw, "run_tasks", user)
                    denials[user] = None
                except DeniedError as e:
                    denials[user] = str(e)
            denied = denials[user]
            if denied is not None:
                unauthorized = TaskStatus.REASON_TASK_UNAUTHORIZED
                self._reply(fw, info.task_id, tpb.TASK_ERROR, unauthorized, denied, agent.id, now)
                return None
        task_info = tpb.TaskInfo()
        task_info.CopyFrom(info)  # its own message: a field of `run` or `info` would keep all of that alive
        task_info.agent_id = agent.id
        reserved_roles = sorted(r for r in resources.roles() if r != UNRESERVED)
        task = Task(
            framework_id=fw.id,
            agent_id=agent.id,
            info=task_info,
            resources=resources,
            role=reserved_roles[0] if reserved_roles else offer_role,
        )
        fw.tasks[info.task_id] = task
        agent.tasks[(fw.id, info.task_id)] = task
        self._publish_task_added(task)
        self.outbox.agent(agent.id).runs.append(MasterMessage.RunTask(framework=fw.info, task=task_info))
        return task

    def _give_back_unused(
        self,
        fw: Framework,
        agent: AgentRecord,
        offered: Resources,
        pool: Resources,
        launched: list[Task],
        role: str,
        reservations_changed: bool,
        refuse: float,
        now: float,
    ) -> None:
        """What the operations left of the offers (`pool`) goes back to the allocator, refused for `refuse` s."""
        if not reservations_changed:
            if pool:
                self.allocator.recover_resources(fw.id, agent.id, pool, refuse, now, role=role)
            return
        # The agent's total changed: give the offered resources back, update the agent, and charge what the
        # tasks now hold (reserved resources included) to the framework again.
        self.allocator.recover_resources(fw.id, agent.id, offered, None, now, role=role)
        self._agent_total_changed(agent)
        for placed in launched:
            self.allocator.add_used(fw.id, agent.id, placed.resources, role=placed.role)
        if pool:
            self.allocator.add_used(fw.id, agent.id, pool, role=role)
            self.allocator.recover_resources(fw.id, agent.id, pool, refuse, now, role=role)
