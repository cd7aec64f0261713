"""Every check the master makes of a call before it acts, as Mesos' `master/validation.cpp`: pure functions of
the call (and, where a check needs them, the facts it is checked against), unit-tested directly.

Every call is checked first for its shape (`bounds`: sizes, counts, the id alphabet), then for its meaning here.
Two shapes, one error type: `validate_*` raise `CallError` with a message that says what is wrong (the call is
refused as a whole); the checks whose failure only drops a part of a call return what is wrong instead
(`accept_offers` the offers' problems, `task_error` why one task of an ACCEPT cannot launch). A new check (a
limit) goes here, next to the checks of the same call; a new field bound goes in `bounds`. A message that quotes
what a client sent quotes it with `quoted`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.allocator import validate_quota as validate_quota_tree
from mesos_master.allocator.base import Quota
from mesos_master.bounds import (
    check_acknowledgements,
    check_agent_info,
    check_framework_info,
    check_kill,
    check_resources,
    check_role,
    check_roles,
    check_weights,
)
from mesos_master.errors import CallError as CallError  # re-exported: the error type of every check
from mesos_master.errors import DeniedError as DeniedError
from mesos_master.errors import UnknownIdError as UnknownIdError
from mesos_master.records import Offer, Task
from scheduler_sdk.quoting import quoted
from scheduler_sdk.resources import UNRESERVED, Resources, ResourcesError
from scheduler_sdk.states import is_terminal

OfferOperation = scheduler_pb2.Offer_Operation


# --------------------------------------------------------------------------------------------- roles
def validate_role(role: str, field: str = "role") -> None:
    """A role, as Mesos validates one (see `bounds.check_role`)."""
    check_role(role, field)


def is_role_or_below(role: str, ancestor: str) -> bool:
    return role == ancestor or role.startswith(ancestor + "/")


def call_roles(named: Sequence[str], framework_roles: list[str], call: str) -> list[str]:
    """The roles a REVIVE or SUPPRESS names (none: all of the framework's); raises CallError for others."""
    check_roles(f"{call}.roles", named)
    chosen = list(named)
    unknown = sorted(set(chosen) - set(framework_roles))
    if unknown:
        raise CallError(
            f"{call}: {', '.join(map(quoted, unknown))} not among the framework's roles ({', '.join(framework_roles)})"
        )
    return chosen or framework_roles


# --------------------------------------------------------------------------------------------- frameworks
def validate_framework_info(info: rpb.FrameworkInfo) -> None:
    """SUBSCRIBE: the FrameworkInfo a framework subscribes (or resubscribes) with."""
    check_framework_info(info)
    if not info.name:
        raise CallError("framework_info.name must not be empty")
    if len(set(info.roles)) != len(info.roles):
        raise CallError("framework_info.roles must not repeat a role")
    validate_offer_constraints(info)


def validate_updated_framework_info(info: rpb.FrameworkInfo, framework_id: str) -> None:
    """UPDATE_FRAMEWORK: the new FrameworkInfo of a subscribed framework (its id may be left out)."""
    check_framework_info(info)
    if info.id and info.id != framework_id:
        raise CallError(f"framework_info.id {quoted(info.id)} is not this framework ({framework_id})")
    if not info.name:
        raise CallError("framework_info.name must not be empty")
    if len(set(info.roles)) != len(info.roles):
        raise CallError("framework_info.roles must not repeat a role")
    validate_offer_constraints(info)


def validate_offer_constraints(info: rpb.FrameworkInfo) -> None:
    """The framework's offer constraints and minimum allocatable resources."""
    for c in info.offer_constraints.attributes:
        given = [x for x in (c.equals, list(c.__getattribute__("in")), c.regex) if x]
        if not c.attribute or len(given) != 1:
            raise CallError(
                f"offer constraint on {quoted(c.attribute or '(no attribute)')}: give exactly one of equals, in, regex"
            )
        if c.regex:
            try:
                re.compile(c.regex)
            except re.error as e:
                raise CallError(
                    f"offer constraint on {quoted(c.attribute)}: bad regex {quoted(c.regex)}: {e}"
                ) from None
    try:
        Resources.from_proto(info.offer_constraints.min_resources)
        for minimum in info.min_allocatable_resources.values():
            for alternative in minimum.alternatives:
                Resources.from_proto(alternative.resources)
    except ResourcesError as e:
        raise CallError(f"framework_info: {e}") from None


def call_framework_error(named_framework_id: str, stream_framework_id: str) -> str | None:
    """A call on a framework's stream that names another framework (none named: it is the stream's)."""
    if named_framework_id and named_framework_id != stream_framework_id:
        return f"call names framework {quoted(named_framework_id)}, but this stream belongs to {stream_framework_id}"
    return None


# --------------------------------------------------------------------------------------------- agents
def validate_agent_info(info: rpb.AgentInfo) -> None:
    """REGISTER: the AgentInfo an agent attaches with."""
    check_agent_info(info)
    if not info.hostname:
        raise CallError("agent_info.hostname must not be empty")
    try:
        total = Resources.from_proto(info.resources)
    except ResourcesError as e:
        raise CallError(f"agent_info.resources: {e}") from None
    if not total:
        raise CallError("agent_info.resources must not be empty")


# --------------------------------------------------------------------------------------------- accept
def accept_offers(
    framework_id: str, offer_ids: Iterable[str], outstanding: Mapping[str, Offer]
) -> tuple[list[Offer], list[str]]:
    """ACCEPT's offers: each must be outstanding, this framework's, and all on one agent, allocated to one role.
    Returns the valid ones and, for the others and for the whole, what is wrong (nothing: the call may go on)."""
    problems: list[str] = []
    valid: list[Offer] = []
    seen: set[str] = set()
    for offer_id in offer_ids:
        offer = outstanding.get(offer_id)
        if offer_id in seen:
            problems.append(f"offer {quoted(offer_id)} appears twice")
        elif offer is None:
            problems.append(f"offer {quoted(offer_id)} is no longer valid (unknown, used, declined or rescinded)")
        elif offer.framework_id != framework_id:
            problems.append(f"offer {quoted(offer_id)} belongs to another framework")
        else:
            valid.append(offer)
        seen.add(offer_id)
    if not seen:
        problems.append("an accept must name at least one offer")
    agent_ids = {o.agent_id for o in valid}
    if len(agent_ids) > 1:
        problems.append(f"offers from different agents ({', '.join(sorted(agent_ids))}) in one accept")
    offer_roles = {o.role for o in valid}
    if len(offer_roles) > 1:
        problems.append(f"offers allocated to different roles ({', '.join(sorted(offer_roles))}) in one accept")
    return valid, problems


def task_error(
    info: tpb.TaskInfo, agent_id: str, pool: Resources, framework_tasks: Mapping[str, Task], launched: Collection[str]
) -> str | None:
    """Why a task of an ACCEPT's LAUNCH cannot run on `agent_id` from what is left of the offers (`pool`), given
    the framework's tasks and the ids launched earlier in the same accept; None: it can."""
    checked = launch_resources(info, agent_id, pool, framework_tasks, launched)
    return checked if isinstance(checked, str) else None


def launch_resources(
    info: tpb.TaskInfo, agent_id: str, pool: Resources, framework_tasks: Mapping[str, Task], launched: Collection[str]
) -> Resources | str:
    """`task_error`'s check, returning what the task runs with when it can (its resources, read once: within
    `pool`), else why not (a str)."""
    if not info.task_id:
        return "task_id must not be empty"
    task = f"task {quoted(info.task_id)}"
    known = framework_tasks.get(info.task_id)
    if info.task_id in launched or (known is not None and not is_terminal(known.state)):
        return f"{task} has a duplicate id: a task with this id is already active"
    if info.agent_id and info.agent_id != agent_id:
        return f"{task} names agent {quoted(info.agent_id)} but the offers are from agent {agent_id}"
    if not info.command.value:
        return f"{task} has no command (command.value is empty)"
    try:
        resources = Resources.from_proto(info.resources)
    except ResourcesError as e:
        return f"{task} has invalid resources: {e}"
    if not resources.scalars():
        return f"{task} uses no resources: it must ask for cpus or mem"
    if not pool.contains(resources):
        return f"{task} uses more resources than offered: needs {resources}, the offers have {pool or 'nothing'} left"
    return resources


def validate_reservation_operation(
    operation: scheduler_pb2.Offer_Operation, offer_role: str, framework_roles: list[str]
) -> Resources:
    """An ACCEPT's RESERVE or UNRESERVE, as a call: returns the resources it names. As in Mesos, a RESERVE is for
    the offers' allocation role or a role below it, and every role is one of the framework's (or below one)."""
    reserve = operation.type == OfferOperation.RESERVE
    wanted = operation.reserve.resources if reserve else operation.unreserve.resources
    try:
        resources = Resources.from_proto(wanted)
    except ResourcesError as e:
        raise CallError(str(e)) from None
    if not resources:
        raise CallError("no resources given")
    for role in sorted(resources.roles()):
        if role == UNRESERVED:
            raise CallError("every resource must name the role it is (un)reserved for")
        if reserve and not is_role_or_below(role, offer_role):
            raise CallError(
                f"role {quoted(role)} is neither the offers' allocation role {quoted(offer_role)} nor a role below it"
            )
        if not any(is_role_or_below(role, r) for r in framework_roles):
            raise CallError(f"role {quoted(role)} is not one of the framework's roles ({', '.join(framework_roles)})")
    return resources


# --------------------------------------------------------------------------------------------- other calls
def validate_kill(call: scheduler_pb2.Call.Kill) -> None:
    check_kill(call)


def validate_acknowledgements(acks: Sequence[tpb.Acknowledgement]) -> None:
    """ACKNOWLEDGE: every acknowledgement of the message is checked before any is acted on."""
    check_acknowledgements(acks)
    for ack in acks:
        if not ack.uuid:
            raise CallError(f"acknowledgement for task {quoted(ack.task_id)} has no uuid")


# --------------------------------------------------------------------------------------------- operator
def validate_operator_reservation(resources: Resources) -> None:
    """The operator's RESERVE or UNRESERVE: every resource names a valid role."""
    if not resources:
        raise CallError("no resources given")
    for role in resources.roles():
        if role == UNRESERVED:
            raise CallError("every resource must name the role it is (un)reserved for, e.g. cpus(eng):2")
        validate_role(role)


def operator_resources(field: str, resources: Sequence[rpb.Resource]) -> Resources:
    """The resources an operator call names (Reserve, Unreserve, SetQuota): bounded, then read (CallError for
    the shape, ResourcesError for the amounts)."""
    check_resources(field, resources)
    return Resources.from_proto(resources)


def validate_weights(weights: Mapping[str, float]) -> None:
    """UpdateWeights: finite, neither zero nor absurd (see `bounds.check_weights`), for valid roles."""
    check_weights(weights)


def validate_quota(quotas: Mapping[str, Quota], role: str, quota: Quota | None) -> None:
    """Set (None: remove) a role's quota, given every role's quota now: hierarchical quota, as in Mesos (see
    `mesos_master.allocator.validate_quota`)."""
    validate_role(role)
    try:
        validate_quota_tree(quotas, role, quota)
    except ValueError as e:
        raise CallError(str(e)) from None
