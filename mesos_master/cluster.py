"""The master's state and its transitions: agents, frameworks, tasks and offers. Pure and deterministic.

Every entry point takes the facts (a call from a framework, a message from an agent, the time) and changes
state; what must be sent or written is put into the `Outbox`, which the shell (`api/`, `daemon.py`) drains
once per event-loop turn. Draining batches: all offers for a framework become one OFFERS event, all its
status updates one UPDATE event, all launches for an agent one RUN_TASKS message, and so on.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypedDict

import structlog

from aiomesos.v1 import agent_pb2, scheduler_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.allocator import Allocator, validate_quota
from mesos_master.allocator.base import AttributeMatch, OfferConstraints, Quota, RunningTask
from mesos_master.registry import RegistryState
from scheduler_sdk.resources import UNRESERVED, Resources, ResourcesError, attribute_values
from scheduler_sdk.states import is_terminal

log = structlog.get_logger(__name__)

S = tpb.TaskStatus
CAP = rpb.FrameworkInfo.Capability
DEFAULT_REFUSE_SECONDS = 5.0
# "true" on a task: the allocator does not revoke it while it fits within its role's guarantee (see docs)
NON_REVOCABLE_LABEL = "aiomesos.non_revocable"
COMPLETED_TASKS_KEPT = 1000
COMPLETED_FRAMEWORKS_KEPT = 50
STATUSES_KEPT = 8


class CallError(ValueError):
    """A call that cannot be carried out; the message says what is wrong."""


# --------------------------------------------------------------------------------------------- records
@dataclass(slots=True)
class Task:
    framework_id: str
    agent_id: str
    info: tpb.TaskInfo
    resources: Resources
    state: int = tpb.TASK_STAGING
    statuses: deque[tpb.TaskStatus] = field(default_factory=lambda: deque(maxlen=STATUSES_KEPT))
    kill_requested: bool = False
    role: str | None = None  # the role its resources were allocated under (None: not known)
    started_at: float | None = None  # when it first reached RUNNING (revocation takes the oldest first)
    preempted: bool = False

    @property
    def task_id(self) -> str:
        return self.info.task_id

    def latest(self) -> tpb.TaskStatus | None:
        return self.statuses[-1] if self.statuses else None


@dataclass(slots=True)
class Offer:
    id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    created_at: float


@dataclass(slots=True)
class Framework:
    info: rpb.FrameworkInfo
    connected: bool
    registered_time: float
    reregistered_time: float = 0.0
    disconnected_at: float | None = None
    expires_at: float | None = None  # while disconnected: when it is removed unless it resubscribes
    suppressed_roles: set[str] = field(default_factory=set)  # roles it asked no offers in (SUPPRESS)
    tasks: dict[str, Task] = field(default_factory=dict)
    completed_tasks: deque[Task] = field(default_factory=lambda: deque(maxlen=COMPLETED_TASKS_KEPT))
    offers: set[str] = field(default_factory=set)

    @property
    def id(self) -> str:
        return self.info.id

    def has(self, capability: int) -> bool:
        return any(c.type == capability for c in self.info.capabilities)

    def roles(self) -> list[str]:
        return list(self.info.roles) or [UNRESERVED]

    @property
    def suppressed(self) -> bool:
        """Suppressed in every one of its roles (it gets no offers at all)."""
        return set(self.roles()) <= self.suppressed_roles


@dataclass(slots=True)
class Agent:
    info: rpb.AgentInfo
    total: Resources  # what the agent reported, with the dynamic reservations applied
    connected: bool
    registered_time: float
    reregistered_time: float = 0.0
    disconnected_at: float | None = None
    tasks: dict[tuple[str, str], Task] = field(default_factory=dict)
    offers: set[str] = field(default_factory=set)
    recovered: bool = False  # known from the registry, not re-attached since this master started
    unreachable_at: float | None = None  # when the master gave up waiting for it (None: reachable)
    # Tasks of frameworks that are not PARTITION_AWARE, reported TASK_LOST when the agent became unreachable:
    # should the agent come back with them, they are killed, and their updates end at the master.
    lost_tasks: set[tuple[str, str]] = field(default_factory=set)

    @property
    def id(self) -> str:
        return self.info.id


# --------------------------------------------------------------------------------------------- outbox
@dataclass
class _FrameworkMail:
    first: list[scheduler_pb2.Event] = field(default_factory=list)
    rescinds: list[str] = field(default_factory=list)
    updates: list[tpb.TaskStatus] = field(default_factory=list)
    offers: list[scheduler_pb2.Offer] = field(default_factory=list)
    rest: list[scheduler_pb2.Event] = field(default_factory=list)


@dataclass
class _AgentMail:
    first: list[agent_pb2.MasterMessage] = field(default_factory=list)
    runs: list[agent_pb2.MasterMessage.RunTask] = field(default_factory=list)
    kills: list[agent_pb2.MasterMessage.KillTask] = field(default_factory=list)
    acks: list[tpb.Acknowledgement] = field(default_factory=list)
    rest: list[agent_pb2.MasterMessage] = field(default_factory=list)


@dataclass
class Drained:
    to_frameworks: dict[str, list[scheduler_pb2.Event]]
    to_agents: dict[str, list[agent_pb2.MasterMessage]]
    close_frameworks: dict[str, str]  # framework id -> why its stream ends
    writes: list[tuple[str, object]]  # registry writes, in order


class Outbox:
    def __init__(self) -> None:
        self._fw: dict[str, _FrameworkMail] = {}
        self._ag: dict[str, _AgentMail] = {}
        self._close: dict[str, str] = {}
        self._writes: list[tuple[str, object]] = []

    def __bool__(self) -> bool:
        return bool(self._fw or self._ag or self._close or self._writes)

    def fw(self, framework_id: str) -> _FrameworkMail:
        mail = self._fw.get(framework_id)
        if mail is None:
            mail = self._fw[framework_id] = _FrameworkMail()
        return mail

    def agent(self, agent_id: str) -> _AgentMail:
        mail = self._ag.get(agent_id)
        if mail is None:
            mail = self._ag[agent_id] = _AgentMail()
        return mail

    def close(self, framework_id: str, why: str) -> None:
        self._close[framework_id] = why

    def write(self, op: str, arg: object) -> None:
        self._writes.append((op, arg))

    def drain(self) -> Drained:
        E = scheduler_pb2.Event
        M = agent_pb2.MasterMessage
        to_fw: dict[str, list[scheduler_pb2.Event]] = {}
        for fid, m in self._fw.items():
            events = list(m.first)
            if m.rescinds:
                events.append(E(type=E.RESCIND, rescind=E.Rescind(offer_ids=m.rescinds)))
            if m.updates:
                events.append(E(type=E.UPDATE, update=E.Update(statuses=m.updates)))
            if m.offers:
                events.append(E(type=E.OFFERS, offers=E.Offers(offers=m.offers)))
            events.extend(m.rest)
            to_fw[fid] = events
        to_ag: dict[str, list[agent_pb2.MasterMessage]] = {}
        for aid, a in self._ag.items():
            msgs = list(a.first)
            if a.runs:
                msgs.append(M(type=M.RUN_TASKS, run_tasks=M.RunTasks(tasks=a.runs)))
            if a.kills:
                msgs.append(M(type=M.KILL_TASKS, kill_tasks=M.KillTasks(tasks=a.kills)))
            if a.acks:
                msgs.append(M(type=M.ACKNOWLEDGE, acknowledge=M.Acknowledge(acknowledgements=a.acks)))
            msgs.extend(a.rest)
            to_ag[aid] = msgs
        drained = Drained(to_fw, to_ag, self._close, self._writes)
        self._fw, self._ag, self._close, self._writes = {}, {}, {}, []
        return drained


# --------------------------------------------------------------------------------------------- the master
class Master:
    """All of the master's state. Methods are called from one thread (the event loop) and never block."""

    def __init__(
        self,
        master_id: str,
        allocator: Allocator,
        *,
        clock: Callable[[], float] = time.time,
        recovered: RegistryState | None = None,
        offer_timeout: float | None = None,
        agent_reregister_timeout: float = 600.0,
        agent_unreachable_timeout: float = 75.0,
        unreachable_agent_max_age: float = 14 * 24 * 3600.0,
        hostname: str = "",
    ) -> None:
        self.master_id = master_id
        self.allocator = allocator
        self.clock = clock
        self.offer_timeout = offer_timeout
        # How long an agent may stay away before it is unreachable: after this master's start, for agents known
        # from the registry (they need time to find the new master), and after a disconnection, for the others.
        self.agent_reregister_timeout = agent_reregister_timeout
        self.agent_unreachable_timeout = agent_unreachable_timeout
        # How long an unreachable agent is remembered before it is forgotten (its tasks then become unknown).
        self.unreachable_agent_max_age = unreachable_agent_max_age
        self.hostname = hostname
        self.start_time = clock()
        self.outbox = Outbox()
        self.frameworks: dict[str, Framework] = {}
        self.completed_frameworks: deque[Framework] = deque(maxlen=COMPLETED_FRAMEWORKS_KEPT)
        self.removed_framework_ids: set[str] = set()
        self.agents: dict[str, Agent] = {}
        self.offers: dict[str, Offer] = {}
        self._ids = itertools.count(1)
        self._allocator_agents: set[str] = set()  # agents the allocator currently knows
        self.weights: dict[str, float] = {}
        self.quotas: dict[str, Quota] = {}
        self.reservations: dict[str, Resources] = {}  # agent id -> its dynamic reservations
        self.counters: dict[str, int] = {}
        if recovered is not None:
            self._recover(recovered)

    # ----------------------------------------------------------------------------- ids
    def _new_id(self, kind: str) -> str:
        return f"{self.master_id}-{kind}{next(self._ids)}"

    def _recover(self, state: RegistryState) -> None:
        """After a restart: what the registry kept waits, disconnected, for its owner to come back."""
        now = self.clock()
        self.removed_framework_ids = set(state.removed_frameworks)
        for agent_id, reserved in state.reservations.items():
            self.reservations[agent_id] = Resources.from_proto(reserved)
        if state.weights:
            self.weights = dict(state.weights)
            self.allocator.update_weights(self.weights)
        for role, (guarantee, limit) in state.quotas.items():
            quota = Quota(Resources.from_proto(guarantee), None if limit is None else Resources.from_proto(limit))
            self.quotas[role] = quota
            self.allocator.update_quota(role, quota)
        for agent_id, info in state.agents.items():
            try:
                total = with_reservations(Resources.from_proto(info.resources), self.reservations.get(agent_id))
            except ResourcesError:
                total = Resources.empty()
            since = state.unreachable.get(agent_id)
            self.agents[agent_id] = Agent(
                info=info,
                total=total,
                connected=False,
                registered_time=now,
                disconnected_at=now,
                recovered=True,
                unreachable_at=since,
            )
        for framework_id, fw_info in state.frameworks.items():
            # After a master restart a framework gets the longer of its failover timeout and the agents'
            # re-attach timeout to come back: it could not have resubscribed while the master was down.
            expires = now + max(fw_info.failover_timeout, self.agent_reregister_timeout)
            self.frameworks[framework_id] = Framework(
                info=fw_info, connected=False, registered_time=now, disconnected_at=now, expires_at=expires
            )
            self.allocator.add_framework(
                framework_id, list(fw_info.roles), {}, active=False, **allocator_options(fw_info)
            )

    # ============================================================================= frameworks
    def subscribe(self, info: rpb.FrameworkInfo) -> str:
        """A framework subscribes (or resubscribes with its id). Returns its id; raises CallError."""
        now = self.clock()
        if not info.name:
            raise CallError("framework_info.name must not be empty")
        for role in info.roles:
            _validate_role(role)
        if len(set(info.roles)) != len(info.roles):
            raise CallError("framework_info.roles must not repeat a role")
        if info.failover_timeout < 0:
            raise CallError("framework_info.failover_timeout must not be negative")
        allocator_options(info)  # constraints and minimums must be valid
        copy = rpb.FrameworkInfo()
        copy.CopyFrom(info)
        info = copy
        # An empty user means: run tasks as the agent's own user.
        framework_id = info.id
        if framework_id and framework_id in self.removed_framework_ids:
            raise CallError(f"framework {framework_id} was torn down and cannot subscribe again")
        existing = self.frameworks.get(framework_id) if framework_id else None
        if existing is not None:
            self._rescind_all(existing, recover=True)
            # As in Mesos, a (re-)subscription lifts suppression: a framework suppresses again if it wants to.
            existing.suppressed_roles.clear()
            self.allocator.update_framework(framework_id, list(info.roles), **allocator_options(info))
            self.allocator.revive_offers(framework_id)
            existing.info = info
            existing.connected = True
            existing.disconnected_at = existing.expires_at = None
            existing.reregistered_time = now
            self.allocator.activate_framework(framework_id)
            fw = existing
        else:
            if not framework_id:
                framework_id = info.id = self._new_id("F")
            fw = Framework(info=info, connected=True, registered_time=now)
            self.frameworks[framework_id] = fw
            self.allocator.add_framework(
                framework_id, list(info.roles), self._used_by(framework_id), **allocator_options(info)
            )
        self.outbox.write("put_framework", info)
        E = scheduler_pb2.Event
        self.outbox.fw(framework_id).first.append(
            E(
                type=E.SUBSCRIBED,
                subscribed=E.Subscribed(framework_id=framework_id, master_id=self.master_id),
            )
        )
        log.info("framework subscribed", framework_id=framework_id, name=info.name, resubscribed=existing is not None)
        return framework_id

    def update_framework(self, framework_id: str, info: rpb.FrameworkInfo) -> None:
        """UPDATE_FRAMEWORK: new roles, capabilities, offer constraints or minimums; the id stays."""
        fw = self._framework(framework_id)
        if info.id and info.id != framework_id:
            raise CallError(f"framework_info.id {info.id!r} is not this framework ({framework_id})")
        if not info.name:
            raise CallError("framework_info.name must not be empty")
        for role in info.roles:
            _validate_role(role)
        options = allocator_options(info)  # validates constraints and minimums
        new = rpb.FrameworkInfo()
        new.CopyFrom(info)
        new.id = framework_id
        new.user = new.user or fw.info.user
        self._rescind_all(fw, recover=True)
        self.allocator.update_framework(framework_id, list(new.roles), **options)
        fw.info = new
        fw.suppressed_roles &= set(fw.roles())
        self.outbox.write("put_framework", new)

    def disconnect_framework(self, framework_id: str) -> None:
        fw = self.frameworks.get(framework_id)
        if fw is None or not fw.connected:
            return
        fw.connected = False
        fw.disconnected_at = self.clock()
        fw.expires_at = fw.disconnected_at + fw.info.failover_timeout
        self.allocator.deactivate_framework(framework_id)
        self._rescind_all(fw, recover=True, notify=False)
        log.info("framework disconnected", framework_id=framework_id, failover_timeout=fw.info.failover_timeout)

    def teardown(self, framework_id: str, why: str = "framework torn down") -> None:
        """Remove a framework for good: kill its tasks, drop its offers, forget it in the registry."""
        fw = self.frameworks.pop(framework_id, None)
        if fw is None:
            raise CallError(f"unknown framework {framework_id!r}")
        self._rescind_all(fw, recover=True, notify=False)
        agents_with_tasks = {t.agent_id for t in fw.tasks.values()}
        M = agent_pb2.MasterMessage
        for agent_id in agents_with_tasks:
            agent = self.agents.get(agent_id)
            if agent is not None and agent.connected:
                self.outbox.agent(agent_id).rest.append(
                    M(
                        type=M.SHUTDOWN_FRAMEWORK,
                        shutdown_framework=M.ShutdownFramework(framework_id=framework_id),
                    )
                )
        now = self.clock()
        for task in list(fw.tasks.values()):
            if not is_terminal(task.state):
                status = self._master_status(
                    task.task_id, tpb.TASK_KILLED, S.REASON_FRAMEWORK_REMOVED, why, task.agent_id, now
                )
                task.state = tpb.TASK_KILLED
                task.statuses.append(status)
            self._forget_task(fw, task)
        self.allocator.remove_framework(framework_id)
        self.removed_framework_ids.add(framework_id)
        self.completed_frameworks.append(fw)
        self.outbox.write("remove_framework", framework_id)
        if fw.connected:
            self.outbox.close(framework_id, why)
        log.info("framework removed", framework_id=framework_id, why=why)

    def _used_by(self, framework_id: str) -> dict[str, Resources]:
        used: dict[str, Resources] = {}
        for agent in self.agents.values():
            if not agent.connected:
                continue
            for (fid, _), task in agent.tasks.items():
                if fid == framework_id and not is_terminal(task.state):
                    used[agent.id] = used.get(agent.id, Resources.empty()) + task.resources
        return used

    def _framework(self, framework_id: str) -> Framework:
        fw = self.frameworks.get(framework_id)
        if fw is None:
            raise CallError(f"unknown framework {framework_id!r}")
        return fw

    # ----------------------------------------------------------------------------- calls
    def accept(self, framework_id: str, call: scheduler_pb2.Call.Accept) -> None:
        fw = self._framework(framework_id)
        now = self.clock()
        refuse = call.filters.refuse_seconds if call.filters.has_refuse_seconds else DEFAULT_REFUSE_SECONDS
        Op = scheduler_pb2.Offer_Operation
        launches = [t for op in call.operations if op.type == Op.LAUNCH for t in op.launch.task_infos]

        # Validate the offers: each must be outstanding, this framework's, and all on one agent.
        problems: list[str] = []
        valid: list[Offer] = []
        seen: set[str] = set()
        for offer_id in call.offer_ids:
            offer = self.offers.get(offer_id)
            if offer_id in seen:
                problems.append(f"offer {offer_id} appears twice")
            elif offer is None:
                problems.append(f"offer {offer_id} is no longer valid (unknown, used, declined or rescinded)")
            elif offer.framework_id != framework_id:
                problems.append(f"offer {offer_id} belongs to another framework")
            else:
                valid.append(offer)
            seen.add(offer_id)
        if not call.offer_ids:
            problems.append("an accept must name at least one offer")
        agent_ids = {o.agent_id for o in valid}
        if len(agent_ids) > 1:
            problems.append(f"offers from different agents ({', '.join(sorted(agent_ids))}) in one accept")
        offer_roles = {o.role for o in valid}
        if len(offer_roles) > 1:
            problems.append(f"offers allocated to different roles ({', '.join(sorted(offer_roles))}) in one accept")
        for offer in valid:
            self._remove_offer(offer)
        agent = self.agents.get(next(iter(agent_ids))) if len(agent_ids) == 1 else None
        if not problems and (agent is None or not agent.connected):
            problems.append("the offers' agent is no longer attached")

        if problems:
            message = "; ".join(problems)
            for task in launches:
                self._reply(fw, task.task_id, tpb.TASK_DROPPED, S.REASON_INVALID_OFFERS, message, task.agent_id, now)
            for offer in valid:
                self.allocator.recover_resources(
                    framework_id, offer.agent_id, offer.resources, None, now, role=offer.role
                )
            return

        assert agent is not None
        role = valid[0].role
        offered = Resources.empty()
        for offer in valid:
            offered = offered + offer.resources
        pool = offered
        reservations_changed = False
        reserved_here = Resources.empty()  # what this accept's RESERVE operations took so far
        launched: list[Task] = []
        launched_ids: set[str] = set()
        M = agent_pb2.MasterMessage
        for op in call.operations:  # in order: a LAUNCH may use what a RESERVE before it reserved
            if op.type in (Op.RESERVE, Op.UNRESERVE):
                try:
                    pool, reserved_here = self._apply_reservation_op(fw, agent, op, pool, role, reserved_here)
                    reservations_changed = True
                except CallError as e:
                    self._error(fw, f"{Op.Type.Name(op.type)} rejected: {e}")
                continue
            if op.type != Op.LAUNCH:
                self._error(fw, f"unsupported offer operation type {op.type}: LAUNCH, RESERVE, UNRESERVE are")
                continue
            for info in op.launch.task_infos:
                reason = self._invalid_task(fw, info, agent.id, pool, launched_ids)
                if reason is not None:
                    self._reply(fw, info.task_id, tpb.TASK_ERROR, S.REASON_TASK_INVALID, reason, agent.id, now)
                    continue
                resources = Resources.from_proto(info.resources)
                pool = pool - resources
                launched_ids.add(info.task_id)
                task_info = tpb.TaskInfo()
                task_info.CopyFrom(info)
                task_info.agent_id = agent.id
                reserved_roles = sorted(r for r in resources.roles() if r != UNRESERVED)
                new_task = Task(
                    framework_id=framework_id,
                    agent_id=agent.id,
                    info=task_info,
                    resources=resources,
                    role=reserved_roles[0] if reserved_roles else role,
                )
                fw.tasks[info.task_id] = new_task
                agent.tasks[(framework_id, info.task_id)] = new_task
                launched.append(new_task)
                self.outbox.agent(agent.id).runs.append(M.RunTask(framework=fw.info, task=task_info))
        if not reservations_changed:
            if pool:
                self.allocator.recover_resources(framework_id, agent.id, pool, refuse, now, role=role)
            return
        # The agent's total changed: give the offered resources back, update the agent, and charge what the
        # tasks now hold (reserved resources included) to the framework again.
        self.allocator.recover_resources(framework_id, agent.id, offered, None, now, role=role)
        self._agent_total_changed(agent)
        for placed in launched:
            self.allocator.add_used(framework_id, agent.id, placed.resources, role=placed.role)
        if pool:
            self.allocator.add_used(framework_id, agent.id, pool, role=role)
            self.allocator.recover_resources(framework_id, agent.id, pool, refuse, now, role=role)

    def _apply_reservation_op(
        self,
        fw: Framework,
        agent: Agent,
        op: scheduler_pb2.Offer_Operation,
        pool: Resources,
        offer_role: str,
        reserved_here: Resources,
    ) -> tuple[Resources, Resources]:
        """RESERVE or UNRESERVE part of an accept's pool; returns the new pool and what the accept reserved.
        As in Mesos, a RESERVE is for the offers' allocation role or a role below it, and must not take a role
        over its quota limit (the allocator says)."""
        Op = scheduler_pb2.Offer_Operation
        wanted = op.reserve.resources if op.type == Op.RESERVE else op.unreserve.resources
        try:
            res = Resources.from_proto(wanted)
        except ResourcesError as e:
            raise CallError(str(e)) from None
        if not res:
            raise CallError("no resources given")
        for role in sorted(res.roles()):
            if role == UNRESERVED:
                raise CallError("every resource must name the role it is (un)reserved for")
            if op.type == Op.RESERVE and not (role == offer_role or role.startswith(offer_role + "/")):
                raise CallError(
                    f"role {role!r} is neither the offers' allocation role {offer_role!r} nor a role below it"
                )
            if not any(role == r or role.startswith(r + "/") for r in fw.roles()):
                raise CallError(f"role {role!r} is not one of the framework's roles ({', '.join(fw.roles())})")
        if op.type == Op.RESERVE:
            plain = Resources.flatten(res, UNRESERVED)
            if not pool.contains(plain):
                raise CallError(f"{plain} is not unreserved in the offers (they have {pool or 'nothing'})")
            try:
                self.allocator.check_reservation(reserved_here + res, allocated_role=offer_role)
            except ValueError as e:
                raise CallError(str(e)) from None
            self._set_reservations(agent, self.reservations.get(agent.id, Resources.empty()) + res)
            return pool - plain + res, reserved_here + res
        dynamic = self.reservations.get(agent.id, Resources.empty())
        if not pool.contains(res):
            raise CallError(f"{res} is not in the offers (they have {pool or 'nothing'})")
        if not dynamic.contains(res):
            raise CallError(f"{res} is not dynamically reserved on agent {agent.id} (static ones cannot be)")
        self._set_reservations(agent, dynamic - res)
        return pool - res + Resources.flatten(res, UNRESERVED), reserved_here

    def _set_reservations(self, agent: Agent, reserved: Resources) -> None:
        if reserved:
            self.reservations[agent.id] = reserved
        else:
            self.reservations.pop(agent.id, None)
        self.outbox.write("set_reservations", (agent.id, reserved.to_proto()))
        reported = Resources.from_proto(agent.info.resources)
        agent.total = with_reservations(reported, reserved or None)

    def _agent_total_changed(self, agent: Agent) -> None:
        if agent.id in self._allocator_agents:
            self.allocator.update_agent(agent.id, agent.total)

    # ----------------------------------------------------------------------------- operator
    def operator_reserve(self, agent_id: str, resources: Resources, unreserve: bool = False) -> None:
        """Reserve (or unreserve) resources of an agent that no task holds, for the roles they name."""
        agent = self.agents.get(agent_id)
        if agent is None:
            raise CallError(f"unknown agent {agent_id!r}")
        if not resources:
            raise CallError("no resources given")
        for role in resources.roles():
            if role == UNRESERVED:
                raise CallError("every resource must name the role it is (un)reserved for, e.g. cpus(eng):2")
            _validate_role(role)
        # Offers on the agent go back first, as in Mesos: what they held may be what is to be reserved.
        for offer_id in list(agent.offers):
            self._rescind(self.offers[offer_id], recover=True)
        used = Resources.empty()
        for task in agent.tasks.values():
            if not is_terminal(task.state):
                used = used + task.resources
        free = agent.total.subtract_clamped(used)
        dynamic = self.reservations.get(agent_id, Resources.empty())
        if unreserve:
            if not dynamic.contains(resources):
                raise CallError(
                    f"{resources} is not dynamically reserved on agent {agent_id} (it has {dynamic or 'none'})"
                )
            if not free.contains(resources):
                raise CallError(f"{resources} is in use by tasks on agent {agent_id}")
            self._set_reservations(agent, dynamic - resources)
        else:
            plain = Resources.flatten(resources, UNRESERVED)
            if not free.unreserved().contains(plain):
                raise CallError(
                    f"agent {agent_id} has not {plain} unreserved and free (it has {free.unreserved() or 'nothing'})"
                )
            try:
                self.allocator.check_reservation(resources)
            except ValueError as e:
                raise CallError(str(e)) from None
            self._set_reservations(agent, dynamic + resources)
        self._agent_total_changed(agent)

    def set_weights(self, weights: dict[str, float]) -> None:
        for role, weight in weights.items():
            _validate_role(role)
            if not weight > 0:
                raise CallError(f"weight of role {role!r} must be > 0, not {weight}")
        self.weights.update(weights)
        self.allocator.update_weights(weights)
        for item in weights.items():
            self.outbox.write("set_weight", item)

    def set_quota(self, role: str, quota: Quota | None) -> None:
        """Set (None: remove) a role's quota; raises CallError for a quota the role tree cannot honour (see
        `validate_quota`: hierarchical quota, as in Mesos)."""
        _validate_role(role)
        if quota is not None and not quota.guarantee and quota.limit is None:
            quota = None
        try:
            validate_quota(self.quotas, role, quota)
        except ValueError as e:
            raise CallError(str(e)) from None
        if quota is None:
            self.quotas.pop(role, None)
            self.outbox.write("set_quota", (role, [], None))
        else:
            self.quotas[role] = quota
            limit = None if quota.limit is None else quota.limit.to_proto()
            self.outbox.write("set_quota", (role, quota.guarantee.to_proto(), limit))
        self.allocator.update_quota(role, quota)

    def role_usage(self) -> dict[str, Resources]:
        """What each role holds: its tasks' resources and its outstanding offers."""
        usage: dict[str, Resources] = {}
        for fw in self.frameworks.values():
            for task in fw.tasks.values():
                if not is_terminal(task.state):
                    role = task.role or fw.roles()[0]
                    usage[role] = usage.get(role, Resources.empty()) + task.resources
        for offer in self.offers.values():
            usage[offer.role] = usage.get(offer.role, Resources.empty()) + offer.resources
        return usage

    def _invalid_task(
        self, fw: Framework, info: tpb.TaskInfo, agent_id: str, pool: Resources, launched: set[str]
    ) -> str | None:
        if not info.task_id:
            return "task_id must not be empty"
        if info.task_id in launched or (info.task_id in fw.tasks and not is_terminal(fw.tasks[info.task_id].state)):
            return f"task {info.task_id} has a duplicate id: a task with this id is already active"
        if info.agent_id and info.agent_id != agent_id:
            return f"task {info.task_id} names agent {info.agent_id} but the offers are from agent {agent_id}"
        if not info.command.value:
            return f"task {info.task_id} has no command (command.value is empty)"
        try:
            resources = Resources.from_proto(info.resources)
        except ResourcesError as e:
            return f"task {info.task_id} has invalid resources: {e}"
        if not resources.scalars():
            return f"task {info.task_id} uses no resources: it must ask for cpus or mem"
        if not pool.contains(resources):
            return (
                f"task {info.task_id} uses more resources than offered: needs {resources}, "
                f"the offers have {pool or 'nothing'} left"
            )
        return None

    def decline(self, framework_id: str, call: scheduler_pb2.Call.Decline) -> None:
        self._framework(framework_id)
        now = self.clock()
        refuse = call.filters.refuse_seconds if call.filters.has_refuse_seconds else DEFAULT_REFUSE_SECONDS
        for offer_id in call.offer_ids:
            offer = self.offers.get(offer_id)
            if offer is None or offer.framework_id != framework_id:
                continue  # already gone: declining is idempotent
            self._remove_offer(offer)
            self.allocator.recover_resources(
                framework_id, offer.agent_id, offer.resources, refuse, now, role=offer.role
            )

    def revive(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        fw = self._framework(framework_id)
        chosen = self._call_roles(fw, roles, "revive")
        fw.suppressed_roles.difference_update(chosen)
        self.allocator.revive_offers(framework_id, list(roles) or None)

    def suppress(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        fw = self._framework(framework_id)
        chosen = self._call_roles(fw, roles, "suppress")
        fw.suppressed_roles.update(chosen)
        self.allocator.suppress_offers(framework_id, list(roles) or None)

    @staticmethod
    def _call_roles(fw: Framework, roles: Iterable[str], call: str) -> list[str]:
        """The roles a REVIVE or SUPPRESS names (none: all of the framework's); raises CallError for others."""
        named = list(roles)
        mine = fw.roles()
        unknown = sorted(set(named) - set(mine))
        if unknown:
            raise CallError(
                f"{call}: {', '.join(map(repr, unknown))} not among the framework's roles ({', '.join(mine)})"
            )
        return named or mine

    def kill(self, framework_id: str, call: scheduler_pb2.Call.Kill) -> None:
        fw = self._framework(framework_id)
        now = self.clock()
        if not call.task_id:
            raise CallError("kill.task_id must not be empty")
        task = fw.tasks.get(call.task_id)
        if task is None or is_terminal(task.state):
            # Unknown to the master: answer as a reconciliation would (Mesos' semantics).
            self._reconcile_one(fw, call.task_id, call.agent_id, now)
            return
        task.kill_requested = True
        agent = self.agents.get(task.agent_id)
        if agent is not None and agent.connected:
            self.outbox.agent(agent.id).kills.append(
                agent_pb2.MasterMessage.KillTask(
                    framework_id=framework_id, task_id=call.task_id, kill_policy=call.kill_policy
                )
            )

    def acknowledge(self, framework_id: str, acks: Iterable[tpb.Acknowledgement]) -> None:
        fw = self._framework(framework_id)
        for ack in acks:
            if not ack.uuid:
                raise CallError(f"acknowledgement for task {ack.task_id!r} has no uuid")
            task = fw.tasks.get(ack.task_id)
            agent_id = ack.agent_id or (task.agent_id if task else "")
            agent = self.agents.get(agent_id)
            if agent is not None and agent.connected:
                fwd = tpb.Acknowledgement()
                fwd.CopyFrom(ack)
                fwd.framework_id = framework_id
                fwd.agent_id = agent_id
                self.outbox.agent(agent_id).acks.append(fwd)
            if task is not None and is_terminal(task.state):
                latest = task.latest()
                if latest is not None and latest.uuid == ack.uuid:
                    self._forget_task(fw, task)

    def reconcile(self, framework_id: str, tasks: Iterable[scheduler_pb2.Call.Reconcile.Task]) -> None:
        fw = self._framework(framework_id)
        now = self.clock()
        wanted = list(tasks)
        if not wanted:
            for task in fw.tasks.values():
                self._reconcile_one(fw, task.task_id, task.agent_id, now)
            return
        for item in wanted:
            self._reconcile_one(fw, item.task_id, item.agent_id, now)

    def _reconcile_one(self, fw: Framework, task_id: str, agent_id: str, now: float) -> None:
        known = fw.tasks.get(task_id)
        completed = known is None
        if known is None:
            known = next((t for t in reversed(fw.completed_tasks) if t.task_id == task_id), None)
        if known is not None:
            # What the master knows of it, exit code included (for a completed task too: its real outcome).
            latest = known.latest()
            status = tpb.TaskStatus(
                task_id=task_id,
                state=known.state,  # type: ignore[arg-type]
                agent_id=known.agent_id,
                source=S.SOURCE_MASTER,
                reason=S.REASON_RECONCILIATION,
                message=("task is complete: " if completed else "") + (latest.message if latest else ""),
                timestamp=now,
            )
            if latest is not None and latest.has_exit_code:
                status.exit_code, status.has_exit_code = latest.exit_code, True
            self.outbox.fw(fw.id).updates.append(status)
            return
        agent = self.agents.get(agent_id) if agent_id else None
        aware = fw.has(CAP.PARTITION_AWARE)
        if agent is not None and agent.connected:
            state, message = tpb.TASK_GONE if aware else tpb.TASK_LOST, "task unknown"
        elif agent is not None and agent.unreachable_at is not None:
            state, message = tpb.TASK_UNREACHABLE if aware else tpb.TASK_LOST, "its agent is unreachable"
        else:
            state = tpb.TASK_UNKNOWN if fw.has(CAP.PARTITION_AWARE) else tpb.TASK_LOST
            message = "task unknown to the master"
        self.outbox.fw(fw.id).updates.append(
            self._master_status(task_id, state, S.REASON_RECONCILIATION, message, agent_id, now)
        )

    def framework_message(self, framework_id: str, call: scheduler_pb2.Call.Message) -> None:
        self._framework(framework_id)
        agent = self.agents.get(call.agent_id)
        if agent is None or not agent.connected:
            raise CallError(f"message to agent {call.agent_id!r}: that agent is not attached")
        M = agent_pb2.MasterMessage
        self.outbox.agent(agent.id).rest.append(
            M(
                type=M.FRAMEWORK_MESSAGE,
                framework_message=M.FrameworkMessage(
                    framework_id=framework_id, executor_id=call.executor_id, data=call.data
                ),
            )
        )

    # ============================================================================= agents
    def register_agent(self, reg: agent_pb2.AgentMessage.Register) -> str:
        """An agent attaches, first time or again. Returns its id; raises CallError."""
        now = self.clock()
        info = rpb.AgentInfo()
        info.CopyFrom(reg.agent_info)
        if not info.hostname:
            raise CallError("agent_info.hostname must not be empty")
        try:
            total = Resources.from_proto(info.resources)
        except ResourcesError as e:
            raise CallError(f"agent_info.resources: {e}") from None
        if not total:
            raise CallError("agent_info.resources must not be empty")
        agent_id = info.id or self._new_id("S")
        info.id = agent_id
        total = with_reservations(total, self.reservations.get(agent_id))
        agent = self.agents.get(agent_id)
        reregistered = agent is not None
        was_unreachable = agent is not None and agent.unreachable_at is not None
        if agent is None:
            agent = Agent(info=info, total=total, connected=True, registered_time=now)
            self.agents[agent_id] = agent
        else:
            if agent.connected:
                self.allocator.remove_agent(agent_id)
                for offer_id in list(agent.offers):
                    self._rescind(self.offers[offer_id], recover=False)
            agent.info, agent.total = info, total
            agent.connected, agent.disconnected_at, agent.reregistered_time = True, None, now
            agent.recovered, agent.unreachable_at = False, None
        self.outbox.write("admit_agent", info)  # also ends its time in the registry's unreachable list

        # The agent's report is the truth about its tasks.
        reported: dict[tuple[str, str], agent_pb2.AgentTask] = {(t.framework_id, t.task.task_id): t for t in reg.tasks}
        for key, task in list(agent.tasks.items()):
            if key in reported:
                continue
            if is_terminal(task.state):
                # Over, and the agent no longer holds its update: nobody will acknowledge it now.
                fw = self.frameworks.get(task.framework_id)
                if fw is not None:
                    self._forget_task(fw, task)
                agent.tasks.pop(key, None)
            else:
                fw = self.frameworks.get(task.framework_id)
                status = self._master_status(
                    task.task_id,
                    tpb.TASK_LOST,
                    S.REASON_AGENT_RESTARTED,
                    "the agent re-attached without this task",
                    agent_id,
                    now,
                )
                self._apply_status(task, status)
                if fw is not None:
                    self.outbox.fw(fw.id).updates.append(status)
                    self._forget_task(fw, task)
                else:
                    del agent.tasks[key]
        for key, reported_task in reported.items():
            framework_id, task_id = key
            if key in agent.lost_tasks:
                # Reported TASK_LOST while the agent was unreachable, to a framework that is not partition-aware:
                # it stays lost (Mesos kills such tasks when their agent comes back).
                self.outbox.agent(agent_id).kills.append(
                    agent_pb2.MasterMessage.KillTask(framework_id=framework_id, task_id=task_id)
                )
                continue
            fw = self.frameworks.get(framework_id)
            if fw is None:
                if framework_id in self.removed_framework_ids:
                    M = agent_pb2.MasterMessage
                    self.outbox.agent(agent_id).rest.append(
                        M(
                            type=M.SHUTDOWN_FRAMEWORK,
                            shutdown_framework=M.ShutdownFramework(framework_id=framework_id),
                        )
                    )
                    continue
                # A framework the master has not heard of (its registry was lost): keep it, disconnected.
                fw = Framework(
                    info=rpb.FrameworkInfo(id=framework_id, name=framework_id),
                    connected=False,
                    registered_time=now,
                    disconnected_at=now,
                    expires_at=now + self.agent_reregister_timeout,
                )
                self.frameworks[framework_id] = fw
                self.allocator.add_framework(framework_id, [], {}, active=False)
            known = fw.tasks.get(task_id)
            try:
                resources = Resources.from_proto(reported_task.task.resources)
            except ResourcesError:
                resources = Resources.empty()
            if known is None:
                known = Task(framework_id, agent_id, reported_task.task, resources, state=reported_task.state)
                fw.tasks[task_id] = known
            task = known
            back_from_unreachable = task.state == tpb.TASK_UNREACHABLE
            task.state = reported_task.state
            agent.tasks[key] = task
            if back_from_unreachable and fw.connected:
                # A partition-aware framework was told TASK_UNREACHABLE: tell it how the task really is now.
                self.outbox.fw(fw.id).updates.append(
                    self._master_status(
                        task_id,
                        task.state,
                        S.REASON_NONE,
                        "its agent is reachable again",
                        agent_id,
                        now,
                    )
                )
            if task.kill_requested and not is_terminal(task.state):
                self.outbox.agent(agent_id).kills.append(
                    agent_pb2.MasterMessage.KillTask(framework_id=framework_id, task_id=task_id)
                )

        used: dict[str, Resources] = {}
        for (fid, _), task in agent.tasks.items():
            if not is_terminal(task.state):
                used[fid] = used.get(fid, Resources.empty()) + task.resources
        if reregistered and agent_id in self._allocator_agents:
            self.allocator.remove_agent(agent_id)
        self.allocator.add_agent(agent_id, total, used, attributes=text_attributes(info))
        self._allocator_agents.add(agent_id)
        M = agent_pb2.MasterMessage
        self.outbox.agent(agent_id).first.append(
            M(type=M.REGISTERED, registered=M.Registered(agent_id=agent_id, master_id=self.master_id))
        )
        log.info(
            "agent attached",
            agent_id=agent_id,
            hostname=info.hostname,
            resources=str(total),
            reregistered=reregistered,
            was_unreachable=was_unreachable,
            tasks=len(reported),
        )
        return agent_id

    def disconnect_agent(self, agent_id: str) -> None:
        agent = self.agents.get(agent_id)
        if agent is None or not agent.connected:
            return
        agent.connected = False
        agent.disconnected_at = self.clock()
        self.allocator.deactivate_agent(agent_id)
        for offer_id in list(agent.offers):
            self._rescind(self.offers[offer_id], recover=True)
        log.info("agent disconnected", agent_id=agent_id)

    def mark_unreachable(self, agent_id: str, why: str) -> None:
        """The master stops waiting for a disconnected agent (Mesos 1.1+): its tasks are TASK_UNREACHABLE to
        PARTITION_AWARE frameworks, which keep them and hear again should the agent come back, and TASK_LOST to
        the others; every framework hears FAILURE (agent_lost). The agent stays known, so that it may re-attach."""
        agent = self.agents.get(agent_id)
        if agent is None or agent.connected or agent.unreachable_at is not None:
            return
        now = self.clock()
        for offer_id in list(agent.offers):
            self._rescind(self.offers[offer_id], recover=False)
        message = f"agent {agent_id} ({agent.info.hostname}) is unreachable: {why}"
        for key, task in list(agent.tasks.items()):
            if is_terminal(task.state):
                continue
            fw = self.frameworks.get(task.framework_id)
            aware = fw is not None and fw.has(CAP.PARTITION_AWARE)
            state = tpb.TASK_UNREACHABLE if aware else tpb.TASK_LOST
            status = self._master_status(task.task_id, state, S.REASON_AGENT_REMOVED, message, agent_id, now)
            self._apply_status(task, status)
            if fw is not None:
                self.outbox.fw(fw.id).updates.append(status)
            if not aware:
                agent.lost_tasks.add(key)
                if fw is not None:
                    self._forget_task(fw, task)
                else:
                    agent.tasks.pop(key, None)
        if agent_id in self._allocator_agents:
            self.allocator.remove_agent(agent_id)
            self._allocator_agents.discard(agent_id)
        agent.unreachable_at = now
        self.outbox.write("mark_unreachable", (agent_id, now))
        self._agent_lost(agent_id)
        log.warning("agent unreachable", agent_id=agent_id, why=why)

    def _agent_lost(self, agent_id: str) -> None:
        E = scheduler_pb2.Event
        for fw in self.frameworks.values():
            if fw.connected:
                self.outbox.fw(fw.id).rest.append(E(type=E.FAILURE, failure=E.Failure(agent_id=agent_id)))

    def remove_agent(self, agent_id: str, reason: int, why: str) -> None:
        agent = self.agents.pop(agent_id, None)
        if agent is None:
            return
        now = self.clock()
        for offer_id in list(agent.offers):
            self._rescind(self.offers[offer_id], recover=False)
        for task in list(agent.tasks.values()):
            fw = self.frameworks.get(task.framework_id)
            if is_terminal(task.state):
                continue
            state = tpb.TASK_GONE if reason == S.REASON_AGENT_REMOVED_BY_OPERATOR else tpb.TASK_LOST
            status = self._master_status(task.task_id, state, reason, why, agent_id, now)
            self._apply_status(task, status)
            if fw is not None:
                self.outbox.fw(fw.id).updates.append(status)
                self._forget_task(fw, task)
        if agent_id in self._allocator_agents:
            self.allocator.remove_agent(agent_id)
            self._allocator_agents.discard(agent_id)
        self.outbox.write("remove_agent", agent_id)
        if agent.unreachable_at is None:
            self._agent_lost(agent_id)  # an unreachable agent was reported lost already
        log.warning("agent removed", agent_id=agent_id, why=why)

    def status_updates(self, agent_id: str, updates: Iterable[agent_pb2.AgentMessage.StatusUpdate]) -> None:
        agent = self.agents.get(agent_id)
        if agent is None:
            return
        M = agent_pb2.MasterMessage
        for update in updates:
            status = update.status
            framework_id = update.framework_id
            lost = (framework_id, status.task_id)
            if lost in agent.lost_tasks:
                # Its framework was told TASK_LOST and that stays the last word: the master acknowledges.
                if status.uuid:
                    self.outbox.agent(agent_id).acks.append(
                        tpb.Acknowledgement(
                            agent_id=agent_id, task_id=status.task_id, uuid=status.uuid, framework_id=framework_id
                        )
                    )
                if is_terminal(status.state):
                    agent.lost_tasks.discard(lost)
                continue
            fw = self.frameworks.get(framework_id)
            if fw is None:
                if framework_id in self.removed_framework_ids and status.uuid:
                    # Nobody will acknowledge it: acknowledge for the removed framework so nothing lingers.
                    self.outbox.agent(agent_id).acks.append(
                        tpb.Acknowledgement(
                            agent_id=agent_id, task_id=status.task_id, uuid=status.uuid, framework_id=framework_id
                        )
                    )
                    self.outbox.agent(agent_id).rest.append(
                        M(
                            type=M.SHUTDOWN_FRAMEWORK,
                            shutdown_framework=M.ShutdownFramework(framework_id=framework_id),
                        )
                    )
                continue
            task = fw.tasks.get(status.task_id)
            if task is None:
                done = next((t for t in reversed(fw.completed_tasks) if t.task_id == status.task_id), None)
                if done is not None:
                    # A retry of an update the framework already acknowledged past: forward, it acks again.
                    if fw.connected:
                        self.outbox.fw(fw.id).updates.append(status)
                    continue
                task = Task(
                    framework_id, agent_id, tpb.TaskInfo(task_id=status.task_id, agent_id=agent_id), Resources.empty()
                )
                fw.tasks[status.task_id] = task
                agent.tasks[(framework_id, status.task_id)] = task
            self._apply_status(task, status)
            if fw.connected:
                self.outbox.fw(fw.id).updates.append(status)

    def _apply_status(self, task: Task, status: tpb.TaskStatus) -> None:
        was_terminal = is_terminal(task.state)
        latest = task.latest()
        if latest is not None and latest.uuid and latest.uuid == status.uuid:
            return  # a retry of the update we have
        if was_terminal and not is_terminal(status.state):
            return  # never leave a terminal state
        task.state = status.state
        task.statuses.append(status)
        if status.state == tpb.TASK_RUNNING and task.started_at is None:
            task.started_at = status.timestamp or self.clock()
        if not was_terminal and is_terminal(status.state):
            self.allocator.recover_resources(
                task.framework_id, task.agent_id, task.resources, None, self.clock(), role=task.role
            )

    def _forget_task(self, fw: Framework, task: Task) -> None:
        """The task is over and acknowledged (or its framework/agent is gone): move it to completed."""
        if not is_terminal(task.state):
            self.allocator.recover_resources(
                task.framework_id, task.agent_id, task.resources, None, self.clock(), role=task.role
            )
        fw.tasks.pop(task.task_id, None)
        fw.completed_tasks.append(task)
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.tasks.pop((fw.id, task.task_id), None)

    # ============================================================================= offers
    def allocate(self) -> int:
        """One allocation cycle; returns the number of offers made."""
        now = self.clock()
        made = 0
        for allocation in self.allocator.allocate(now):
            fw = self.frameworks.get(allocation.framework_id)
            agent = self.agents.get(allocation.agent_id)
            if fw is None or agent is None or not fw.connected or not agent.connected:
                self.allocator.recover_resources(
                    allocation.framework_id, allocation.agent_id, allocation.resources, None, now, role=allocation.role
                )
                continue
            offer = Offer(
                id=self._new_id("O"),
                framework_id=fw.id,
                agent_id=agent.id,
                role=allocation.role,
                resources=allocation.resources,
                created_at=now,
            )
            self.offers[offer.id] = offer
            fw.offers.add(offer.id)
            agent.offers.add(offer.id)
            self.outbox.fw(fw.id).offers.append(
                scheduler_pb2.Offer(
                    id=offer.id,
                    framework_id=fw.id,
                    agent_id=agent.id,
                    hostname=agent.info.hostname,
                    resources=offer.resources.to_proto(),
                    attributes=agent.info.attributes,
                    allocation_role=offer.role,
                    agent_address=agent.info.address,
                )
            )
            made += 1
        return made

    def _remove_offer(self, offer: Offer) -> None:
        self.offers.pop(offer.id, None)
        fw = self.frameworks.get(offer.framework_id)
        if fw is not None:
            fw.offers.discard(offer.id)
        agent = self.agents.get(offer.agent_id)
        if agent is not None:
            agent.offers.discard(offer.id)

    def _rescind(self, offer: Offer, *, recover: bool, notify: bool = True) -> None:
        self._remove_offer(offer)
        if recover:
            self.allocator.recover_resources(
                offer.framework_id, offer.agent_id, offer.resources, None, self.clock(), role=offer.role
            )
        fw = self.frameworks.get(offer.framework_id)
        if notify and fw is not None and fw.connected:
            self.outbox.fw(fw.id).rescinds.append(offer.id)

    def _rescind_all(self, fw: Framework, *, recover: bool, notify: bool = True) -> None:
        for offer_id in list(fw.offers):
            offer = self.offers.get(offer_id)
            if offer is not None:
                self._rescind(offer, recover=recover, notify=notify)
        fw.offers.clear()

    # ============================================================================= time
    def revoke(self) -> int:
        """Carry out the allocator's revocations: the allocator picks the tasks (from the running ones it is told
        about), the master kills them. Returns how many kills it sent."""
        now = self.clock()
        killed = 0
        for revocation in self.allocator.revocations(now, self._running_tasks(now)):
            fw = self.frameworks.get(revocation.framework_id)
            task = fw.tasks.get(revocation.task_id) if fw is not None else None
            if task is None or task.preempted or is_terminal(task.state):
                continue
            self._preempt(task, revocation.for_role)
            killed += 1
        return killed

    def _running_tasks(self, now: float) -> Iterator[RunningTask]:
        """The facts revocation needs about the tasks that hold resources: running ones, and those already being
        killed (whatever their state). A generator: the allocator reads it only when some role is starved."""
        for fw in self.frameworks.values():
            first_role = fw.roles()[0]
            for task in fw.tasks.values():
                if is_terminal(task.state) or not (task.state == tpb.TASK_RUNNING or task.kill_requested):
                    continue
                labels = task.info.labels.labels
                yield RunningTask(
                    framework_id=fw.id,
                    task_id=task.task_id,
                    agent_id=task.agent_id,
                    role=task.role or first_role,
                    resources=task.resources,
                    started_at=task.started_at if task.started_at is not None else now,
                    non_revocable=any(
                        label.key == NON_REVOCABLE_LABEL and label.value.lower() in ("true", "1", "yes")
                        for label in labels
                    ),
                    killing=task.kill_requested,
                )

    def _preempt(self, task: Task, for_role: str) -> None:
        task.preempted = True
        task.kill_requested = True
        agent = self.agents.get(task.agent_id)
        log.info("revoking a task", task_id=task.task_id, role=task.role, for_role=for_role)
        self.counters["tasks_revoked"] = self.counters.get("tasks_revoked", 0) + 1
        if agent is not None and agent.connected:
            self.outbox.agent(agent.id).kills.append(
                agent_pb2.MasterMessage.KillTask(
                    framework_id=task.framework_id,
                    task_id=task.task_id,
                    kill_policy=task.info.kill_policy,
                    reason=S.REASON_CONTAINER_PREEMPTED,
                )
            )

    def tick(self) -> None:
        """Expire what has waited too long: offers, disconnected frameworks, disconnected agents; revoke."""
        now = self.clock()
        self.revoke()
        if self.offer_timeout is not None:
            for offer in [o for o in self.offers.values() if now - o.created_at >= self.offer_timeout]:
                self._rescind(offer, recover=True)
        for fw in list(self.frameworks.values()):
            if not fw.connected and fw.expires_at is not None and now >= fw.expires_at:
                self.teardown(fw.id, "framework failover timeout elapsed")
        for agent in list(self.agents.values()):
            if agent.connected:
                continue
            if agent.unreachable_at is not None:
                if now - agent.unreachable_at >= self.unreachable_agent_max_age:
                    self.remove_agent(agent.id, S.REASON_AGENT_REMOVED, "unreachable for too long: forgotten")
                continue
            away = agent.disconnected_at
            limit = self.agent_reregister_timeout if agent.recovered else self.agent_unreachable_timeout
            if away is not None and now - away >= limit:
                what = "did not re-attach to the new master" if agent.recovered else "did not re-attach"
                self.mark_unreachable(agent.id, f"{what} within {limit:g} s")

    # ============================================================================= helpers
    def _master_status(
        self, task_id: str, state: int, reason: int, message: str, agent_id: str, now: float
    ) -> tpb.TaskStatus:
        return tpb.TaskStatus(
            task_id=task_id,
            state=state,  # type: ignore[arg-type]
            reason=reason,  # type: ignore[arg-type]
            message=message,
            agent_id=agent_id,
            source=S.SOURCE_MASTER,
            timestamp=now,
        )

    def _reply(
        self, fw: Framework, task_id: str, state: int, reason: int, message: str, agent_id: str, now: float
    ) -> None:
        """A master-made update for a task that never launched (it needs no acknowledgement)."""
        self.outbox.fw(fw.id).updates.append(self._master_status(task_id, state, reason, message, agent_id, now))
        log.info("task rejected", framework_id=fw.id, task_id=task_id, state=tpb.TaskState.Name(state), why=message)  # type: ignore[arg-type]

    def _error(self, fw: Framework, message: str) -> None:
        E = scheduler_pb2.Event
        self.outbox.fw(fw.id).rest.append(E(type=E.ERROR, error=E.Error(message=message)))

    def call_error(self, framework_id: str, message: str) -> None:
        fw = self.frameworks.get(framework_id)
        if fw is not None:
            self._error(fw, message)


def with_reservations(reported: Resources, reserved: Resources | None) -> Resources:
    """An agent's total: what it reported, with its dynamic reservations moved from the unreserved pool to their
    roles (what the agent no longer has is dropped)."""
    if not reserved:
        return reported
    taken = Resources.flatten(reserved, UNRESERVED)
    return reported.subtract_clamped(taken) + reserved


def text_attributes(info: rpb.AgentInfo) -> dict[str, str]:
    return attribute_values(info.attributes, info.hostname)


class AllocatorOptions(TypedDict):
    gpu_aware: bool
    constraints: OfferConstraints | None
    min_allocatable: dict[str, list[Resources]] | None


def allocator_options(info: rpb.FrameworkInfo) -> AllocatorOptions:
    """What the allocator needs of a FrameworkInfo; raises CallError for invalid constraints."""
    matches = []
    for c in info.offer_constraints.attributes:
        given = [x for x in (c.equals, list(c.__getattribute__("in")), c.regex) if x]
        if not c.attribute or len(given) != 1:
            raise CallError(
                f"offer constraint on {c.attribute or '(no attribute)'!r}: give exactly one of equals, in, regex"
            )
        if c.regex:
            try:
                re.compile(c.regex)
            except re.error as e:
                raise CallError(f"offer constraint on {c.attribute!r}: bad regex {c.regex!r}: {e}") from None
        matches.append(
            AttributeMatch(
                c.attribute,
                equals=c.equals or None,
                in_=tuple(c.__getattribute__("in")) or None,
                regex=c.regex or None,
            )
        )
    try:
        min_resources = Resources.from_proto(info.offer_constraints.min_resources) or None
        minimums = {
            role: [Resources.from_proto(alt.resources) for alt in m.alternatives]
            for role, m in info.min_allocatable_resources.items()
        }
    except ResourcesError as e:
        raise CallError(f"framework_info: {e}") from None
    constraints = OfferConstraints(tuple(matches), min_resources) if matches or min_resources else None
    return {
        "gpu_aware": any(c.type == CAP.GPU_RESOURCES for c in info.capabilities),
        "constraints": constraints,
        "min_allocatable": minimums or None,
    }


def _validate_role(role: str) -> None:
    if not role:
        raise CallError("a role must not be empty")
    if role == UNRESERVED:
        return
    for part in role.split("/"):
        if part in ("", ".", "..") or part.startswith("-") or any(c.isspace() for c in part):
            raise CallError(f"invalid role {role!r}: roles are '/'-separated names without spaces")
