"""Frameworks: SUBSCRIBE (first time or again), UPDATE_FRAMEWORK, disconnection, failover and TEARDOWN."""

from __future__ import annotations

from typing import TypedDict

import structlog

from aiomesos.v1 import agent_pb2, scheduler_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from aiomesos.v1.events_pb2 import OperatorEvent
from mesos_master.allocator.base import AttributeMatch, OfferConstraints
from mesos_master.offers import OfferTransitions
from mesos_master.records import Framework
from mesos_master.registry.operations import PutFramework, RemoveFramework
from mesos_master.tasks import TaskTransitions
from mesos_master.validation import (
    CallError,
    DeniedError,
    UnknownIdError,
    validate_framework_info,
    validate_updated_framework_info,
)
from scheduler_sdk.quoting import quoted
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import is_terminal

log = structlog.get_logger(__name__)

Event = scheduler_pb2.Event
MasterMessage = agent_pb2.MasterMessage
Capability = rpb.FrameworkInfo.Capability


class FrameworkTransitions(OfferTransitions, TaskTransitions):
    def subscribe(self, info: rpb.FrameworkInfo, principal: str = "") -> str:
        """A framework subscribes (or resubscribes with its id) as `principal` (empty: an insecure master).
        Returns its id; raises CallError (DeniedError: the id belongs to another principal)."""
        validate_framework_info(info)
        copy = rpb.FrameworkInfo()
        copy.CopyFrom(info)
        info = copy
        drop_unknown_capabilities(info)
        if principal:
            if info.principal and info.principal != principal:
                raise DeniedError(f"framework_info.principal {quoted(info.principal)} is not the caller, {principal}")
            info.principal = principal
        # An empty user means: run tasks as the agent's own user.
        framework_id = info.id
        if framework_id and framework_id in self.removed_framework_ids:
            raise CallError(f"framework {quoted(framework_id)} was torn down and cannot subscribe again")
        existing = self.frameworks.get(framework_id) if framework_id else None
        if existing is not None:
            owner = existing.info.principal
            if principal and owner and owner != principal:
                raise DeniedError(f"framework {framework_id} belongs to {owner}, not to {principal}")
            self._resubscribe(existing, info)
        else:
            if not framework_id:
                framework_id = info.id = self._new_id("F")
            self.frameworks[framework_id] = Framework(info=info, connected=True, registered_time=self.clock())
            self.allocator.add_framework(
                framework_id, list(info.roles), self._used_by(framework_id), **allocator_options(info)
            )
        fw = self.frameworks[framework_id]
        added = OperatorEvent.FRAMEWORK_UPDATED if existing is not None else OperatorEvent.FRAMEWORK_ADDED
        self._publish_framework(added, fw)
        self.outbox.write(PutFramework(info))
        self.outbox.framework(framework_id).first.append(
            Event(
                type=Event.SUBSCRIBED,
                subscribed=Event.Subscribed(framework_id=framework_id, master_id=self.master_id),
            )
        )
        log.info("framework subscribed", framework_id=framework_id, name=info.name, resubscribed=existing is not None)
        return framework_id

    def _resubscribe(self, fw: Framework, info: rpb.FrameworkInfo) -> None:
        self._rescind_all(fw, recover=True)
        # As in Mesos, a (re-)subscription lifts suppression: a framework suppresses again if it wants to.
        fw.suppressed_roles.clear()
        self.allocator.update_framework(fw.id, list(info.roles), **allocator_options(info))
        self.allocator.revive_offers(fw.id)
        fw.info = info
        fw.connected = True
        fw.disconnected_at = fw.expires_at = None
        fw.reregistered_time = self.clock()
        self.allocator.activate_framework(fw.id)

    def update_framework(self, framework_id: str, info: rpb.FrameworkInfo) -> None:
        """UPDATE_FRAMEWORK: new roles, capabilities, offer constraints or minimums; the id stays."""
        fw = self._framework(framework_id)
        validate_updated_framework_info(info, framework_id)
        new = rpb.FrameworkInfo()
        new.CopyFrom(info)
        drop_unknown_capabilities(new)
        new.id = framework_id
        new.user = new.user or fw.info.user
        new.principal = fw.info.principal  # bound at SUBSCRIBE; UPDATE_FRAMEWORK cannot change it
        self._rescind_all(fw, recover=True)
        self.allocator.update_framework(framework_id, list(new.roles), **allocator_options(new))
        fw.info = new
        fw.suppressed_roles &= set(fw.roles())
        self.outbox.write(PutFramework(new))
        self._publish_framework(OperatorEvent.FRAMEWORK_UPDATED, fw)

    def disconnect_framework(self, framework_id: str) -> None:
        fw = self.frameworks.get(framework_id)
        if fw is None or not fw.connected:
            return
        fw.connected = False
        fw.disconnected_at = self.clock()
        fw.expires_at = fw.disconnected_at + fw.info.failover_timeout
        self.allocator.deactivate_framework(framework_id)
        self._rescind_all(fw, recover=True, notify=False)
        self.pending_reconciliations.drop_framework(framework_id)  # it reconciles again when it is back
        self._publish_framework(OperatorEvent.FRAMEWORK_UPDATED, fw)
        log.info("framework disconnected", framework_id=framework_id, failover_timeout=fw.info.failover_timeout)

    def teardown(self, framework_id: str, why: str = "framework torn down") -> None:
        """Remove a framework for good: kill its tasks, drop its offers, forget it in the registry."""
        fw = self.frameworks.pop(framework_id, None)
        if fw is None:
            raise UnknownIdError(f"unknown framework {quoted(framework_id)}")
        self._rescind_all(fw, recover=True, notify=False)
        self.pending_reconciliations.drop_framework(framework_id)
        for agent_id in {t.agent_id for t in fw.tasks.values()}:
            agent = self.agents.get(agent_id)
            if agent is not None and agent.connected:
                self.outbox.agent(agent_id).rest.append(
                    MasterMessage(
                        type=MasterMessage.SHUTDOWN_FRAMEWORK,
                        shutdown_framework=MasterMessage.ShutdownFramework(framework_id=framework_id),
                    )
                )
        now = self.clock()
        for task in list(fw.tasks.values()):
            if not is_terminal(task.state):
                status = self._master_status(
                    task.task_id, tpb.TASK_KILLED, tpb.TaskStatus.REASON_FRAMEWORK_REMOVED, why, task.agent_id, now
                )
                task.state = tpb.TASK_KILLED
                task.statuses.append(status)
                self._publish_task_updated(task, fw.info.principal)
            self._forget_task(fw, task)
        self.allocator.remove_framework(framework_id)
        self.removed_framework_ids.add(framework_id)
        self.completed_frameworks.append(fw)
        self.outbox.write(RemoveFramework(framework_id))
        self._publish_framework(OperatorEvent.FRAMEWORK_REMOVED, fw, why, active=False)
        if fw.connected:
            self.outbox.close(framework_id, why)
        log.info("framework removed", framework_id=framework_id, why=why)

    def expire_frameworks(self, now: float) -> None:
        """Tear down the disconnected frameworks whose failover timeout has elapsed."""
        for fw in list(self.frameworks.values()):
            if not fw.connected and fw.expires_at is not None and now >= fw.expires_at:
                self.teardown(fw.id, "framework failover timeout elapsed")

    def _used_by(self, framework_id: str) -> dict[str, Resources]:
        used: dict[str, Resources] = {}
        for agent in self.agents.values():
            if not agent.connected:
                continue
            for (fid, _), task in agent.tasks.items():
                if fid == framework_id and not is_terminal(task.state):
                    used[agent.id] = used.get(agent.id, Resources.empty()) + task.resources
        return used


def drop_unknown_capabilities(info: rpb.FrameworkInfo) -> None:
    """Capabilities the master does not know are ignored, as Mesos ignores them: dropped from its copy of `info`
    (so they are neither stored nor shown), never an error."""
    known = [Capability(type=c.type) for c in info.capabilities if c.type in Capability.Type.values()]
    if len(known) != len(info.capabilities):
        del info.capabilities[:]
        info.capabilities.extend(known)


class AllocatorOptions(TypedDict):
    gpu_aware: bool
    constraints: OfferConstraints | None
    min_allocatable: dict[str, list[Resources]] | None


def allocator_options(info: rpb.FrameworkInfo) -> AllocatorOptions:
    """What the allocator needs of a FrameworkInfo (one `validate_offer_constraints` accepted)."""
    matches = [
        AttributeMatch(
            c.attribute,
            equals=c.equals or None,
            in_=tuple(c.__getattribute__("in")) or None,
            regex=c.regex or None,
        )
        for c in info.offer_constraints.attributes
    ]
    min_resources = Resources.from_proto(info.offer_constraints.min_resources) or None
    minimums = {
        role: [Resources.from_proto(alt.resources) for alt in m.alternatives]
        for role, m in info.min_allocatable_resources.items()
    }
    constraints = OfferConstraints(tuple(matches), min_resources) if matches or min_resources else None
    return {
        "gpu_aware": any(c.type == Capability.GPU_RESOURCES for c in info.capabilities),
        "constraints": constraints,
        "min_allocatable": minimums or None,
    }
