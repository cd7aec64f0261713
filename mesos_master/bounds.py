"""How big a call may be and which characters its ids hold: every field a client sends the master has a bound, in
Mesos' spirit, checked before anything is stored (a 25 MB FrameworkInfo would otherwise live in the registry and
break every GetFrameworks after it). The bounds are the named constants below, in this one place; the checks are
pure and raise `CallError` naming the field, e.g. ``operations[0].launch.task_infos[3].task_id: 300 characters,
at most 255``. A message that quotes a client's value quotes it through `scheduler_sdk.quoting.quoted`.

**Ids** (of frameworks, tasks, executors, agents, offers, operations) are 1 to 255 characters of visible ASCII
(``!`` to ``~``) other than ``/`` and ``\\``, and neither ``.`` nor ``..``. That is Mesos' `validateID` (no path
separators and no control characters, since ids name directories on the agents) made stricter: no whitespace and
no non-ASCII letters either, so an id reads the same in a log, a path and a terminal. **Roles** are '/'-separated
names of that alphabet, none empty, ``.``, ``..`` or starting with ``-`` (Mesos' role rules), at most 255
characters in all. **Names** (of frameworks, tasks, users, principals, label keys, attributes) are printable single
lines of at most 1 KiB; commands and label values may span lines but hold no NUL.

What a value means (is the offer outstanding, is the role the framework's) is `validation`'s; here only its shape.
An empty value is left to the call's own checks, where empty has a meaning (an empty framework id subscribes anew).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Sized

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.errors import CallError
from scheduler_sdk.enums import enum_name
from scheduler_sdk.quoting import quoted
from scheduler_sdk.resources import MAX_RANGES, MAX_SCALAR, MAX_SET_ITEMS, UNRESERVED
from scheduler_sdk.sandbox_files import MAX_FILE_NAME_LENGTH, file_name_problem

# ----------------------------------------------------------------------------------- the bounds
KiB = 1024
MiB = 1024 * KiB

MAX_ID_LENGTH = 255  # as Mesos (NAME_MAX: an id is a directory name)
MAX_ROLE_LENGTH = 255
MAX_NAME_LENGTH = 1 * KiB  # names, users, principals, label keys, attribute names and texts
MAX_HOSTNAME_LENGTH = 255  # a DNS name is at most 253
MAX_ADDRESS_LENGTH = 300  # host:port
MAX_LABELS = 100
MAX_LABEL_VALUE_LENGTH = 4 * KiB
MAX_ROLES = 64  # of one framework, or named by one REVIVE / SUPPRESS
MAX_CAPABILITIES = 64
MAX_RESOURCES = 256  # entries of one resource list
MAX_ATTRIBUTES = 100
MAX_OFFER_CONSTRAINTS = 64
MAX_CONSTRAINT_VALUES = 256
MAX_REGEX_LENGTH = 1 * KiB
MAX_MIN_ALLOCATABLE_ALTERNATIVES = 16
MAX_COMMAND_LENGTH = 64 * KiB  # a command's value, one argument, one environment value
MAX_ARGUMENTS = 1024
MAX_ENVIRONMENT = 1024
MAX_COMMAND_TOTAL = 1 * MiB  # value, arguments and environment together (Linux takes 2 MiB of argv and env)
MAX_URL_PATH_LENGTH = 2 * KiB
MAX_HTTP_STATUSES = 100
MAX_PORT = 65535
MAX_HEALTH_CHECK_SECONDS = 24 * 3600.0
MAX_KILL_GRACE_NANOSECONDS = 24 * 3600 * 10**9
MAX_FAILOVER_TIMEOUT = 10 * 365 * 24 * 3600.0  # ten years
MAX_REFUSE_SECONDS = 365 * 24 * 3600.0  # as Mesos caps a filter
MAX_OFFER_IDS_PER_ACCEPT = 1_000  # offers of one agent
MAX_OPERATIONS_PER_ACCEPT = 10_000
MAX_TASKS_PER_ACCEPT = 10_000  # in all of an accept's LAUNCH operations
MAX_OFFER_IDS_PER_DECLINE = 100_000  # a framework may decline every offer it holds at once
MAX_ACKNOWLEDGEMENTS = 100_000  # per message: the driver acknowledges a whole burst of updates in one
MAX_RECONCILE_TASKS = 100_000
# Reconciliation requests one framework may have waiting for an answer (for tasks on agents that may still come
# back with them): one full RECONCILE call. Beyond, a request is dropped unanswered, as Mesos drops them all.
MAX_PENDING_RECONCILIATIONS = MAX_RECONCILE_TASKS
MAX_UUID_BYTES = 64
MAX_MESSAGE_DATA = 1 * MiB  # a framework message to an executor
MAX_WEIGHTS = 1_000  # roles in one UpdateWeights
MIN_WEIGHT = 1e-3  # below, a role's share divided by its weight leaves every other role's far behind
MAX_WEIGHT = 1e6

ID_ALPHABET = "visible ASCII other than '/' and '\\'"
ROLE_RULES = "roles are '/'-separated names of visible ASCII, none empty, '.', '..' or starting with '-'"
_ID_CHARACTERS = frozenset(map(chr, range(0x21, 0x7F))) - {"/", "\\"}


# ----------------------------------------------------------------------------------- fields
def check_count(field: str, items: Sized, limit: int) -> None:
    if len(items) > limit:
        raise CallError(f"{field}: {len(items)} entries, at most {limit}")


def check_length(field: str, value: str | bytes, limit: int) -> None:
    if len(value) > limit:
        unit = "bytes" if isinstance(value, bytes) else "characters"
        raise CallError(f"{field}: {len(value)} {unit}, at most {limit}")


def is_plain_id(value: str) -> bool:
    """A valid, non-empty id (`check_id` passes it): the hot paths test this before they build a field name."""
    return 0 < len(value) <= MAX_ID_LENGTH and _ID_CHARACTERS.issuperset(value) and value not in (".", "..")


def check_id(field: str, value: str, *, required: bool = False) -> None:
    """An id a client gives: empty only where not `required`, else as the module says."""
    if not value:
        if required:
            raise CallError(f"{field} must not be empty")
        return
    if is_plain_id(value):
        return
    check_length(field, value, MAX_ID_LENGTH)
    if value in (".", ".."):
        raise CallError(f"{field} must not be {value!r}")
    bad = next((c for c in value if c not in _ID_CHARACTERS), None)
    if bad is not None:
        raise CallError(f"{field} {quoted(value)}: {bad!r} is not allowed in an id ({ID_ALPHABET})")


def check_text(field: str, value: str, limit: int, *, single_line: bool = True) -> None:
    """A name (`single_line`: printable, no control characters) or a free text (no NUL) of at most `limit`."""
    check_length(field, value, limit)
    if single_line and not value.isprintable():
        raise CallError(f"{field} {quoted(value)}: control characters are not allowed")
    if "\x00" in value:
        raise CallError(f"{field} {quoted(value)}: a NUL character is not allowed")


def check_number(field: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:  # NaN fails this too
        raise CallError(f"{field}: {value}, must be a number from {low:g} to {high:g}")


def check_role(role: str, field: str = "role") -> None:
    """A role, as Mesos' `roles::validate`, at most MAX_ROLE_LENGTH characters."""
    if not role:
        raise CallError(f"{field}: a role must not be empty")
    check_length(field, role, MAX_ROLE_LENGTH)
    if role == UNRESERVED:
        return
    for part in role.split("/"):
        if part in ("", ".", "..") or part.startswith("-") or not _ID_CHARACTERS.issuperset(part):
            raise CallError(f"{field}: invalid role {quoted(role)}: {ROLE_RULES}")


def check_enum(field: str, enum: object, value: int) -> None:
    """A wire enum holds one of its values (proto3 keeps any number a client sends)."""
    if value not in enum.values():  # type: ignore[attr-defined]
        raise CallError(f"{field}: {enum_name(enum, value)} is not a known value")


def check_labels(field: str, labels: rpb.Labels) -> None:
    check_count(field, labels.labels, MAX_LABELS)
    for i, label in enumerate(labels.labels):
        key, value = label.key, label.value
        if not _plain_text(key, MAX_NAME_LENGTH):
            check_text(f"{field}[{i}].key", key, MAX_NAME_LENGTH)
        if len(value) > MAX_LABEL_VALUE_LENGTH or "\x00" in value:
            check_text(f"{field}[{i}].value", value, MAX_LABEL_VALUE_LENGTH, single_line=False)


def _plain_text(value: str, limit: int) -> bool:
    """A name `check_text` passes (single line), tested without building the field's name first."""
    return len(value) <= limit and value.isprintable() and "\x00" not in value


def check_resources(field: str, resources: Sequence[rpb.Resource]) -> None:
    """A resource list's shape: how many, their names and roles, the size of their sets and ranges. Amounts and
    range ends are `Resources.from_proto`'s (a ResourcesError)."""
    check_count(field, resources, MAX_RESOURCES)
    for i, r in enumerate(resources):
        # Field names are built only for what fails: this runs for every task of every ACCEPT.
        name, role = r.name, r.role
        if name and not is_plain_id(name):
            check_id(f"{field}[{i}].name", name)
        if role and role != UNRESERVED:
            check_role(role, f"{field}[{i}].role")
        if r.HasField("ranges"):
            check_count(f"{field}[{i}].ranges", r.ranges.range, MAX_RANGES)
        if r.HasField("set"):
            where = f"{field}[{i}]"
            check_count(f"{where}.set", r.set.item, MAX_SET_ITEMS)
            for j, item in enumerate(r.set.item):
                check_text(f"{where}.set[{j}]", item, MAX_NAME_LENGTH)


def check_attributes(field: str, attributes: Sequence[rpb.Attribute]) -> None:
    check_count(field, attributes, MAX_ATTRIBUTES)
    for i, a in enumerate(attributes):
        where = f"{field}[{i}]"
        check_text(f"{where}.name", a.name, MAX_NAME_LENGTH)
        check_enum(f"{where}.type", rpb.Value.Type, a.type)
        check_number(f"{where}.scalar", a.scalar.value, -MAX_SCALAR, MAX_SCALAR)
        check_text(f"{where}.text", a.text.value, MAX_NAME_LENGTH)
        check_count(f"{where}.ranges", a.ranges.range, MAX_RANGES)
        check_count(f"{where}.set", a.set.item, MAX_SET_ITEMS)
        for j, item in enumerate(a.set.item):
            check_text(f"{where}.set[{j}]", item, MAX_NAME_LENGTH)


# ----------------------------------------------------------------------------------- tasks
def check_command(field: str, command: rpb.CommandInfo) -> None:
    check_text(f"{field}.value", command.value, MAX_COMMAND_LENGTH, single_line=False)
    arguments = command.arguments
    check_count(f"{field}.arguments", arguments, MAX_ARGUMENTS)
    for i, argument in enumerate(arguments):
        check_text(f"{field}.arguments[{i}]", argument, MAX_COMMAND_LENGTH, single_line=False)
    variables = command.environment.variables if command.HasField("environment") else ()
    check_count(f"{field}.environment", variables, MAX_ENVIRONMENT)
    for i, variable in enumerate(variables):
        check_text(f"{field}.environment[{i}].name", variable.name, MAX_NAME_LENGTH)
        if "=" in variable.name:
            raise CallError(f"{field}.environment[{i}].name {quoted(variable.name)}: '=' is not allowed in a name")
        check_text(f"{field}.environment[{i}].value", variable.value, MAX_COMMAND_LENGTH, single_line=False)
    if command.user:
        check_text(f"{field}.user", command.user, MAX_NAME_LENGTH)
    total = len(command.value) + sum(map(len, arguments)) + sum(len(v.name) + len(v.value) for v in variables)
    if total > MAX_COMMAND_TOTAL:
        raise CallError(
            f"{field}: {total} characters in its value, arguments and environment, at most {MAX_COMMAND_TOTAL}"
        )


def check_health_check(field: str, check: tpb.HealthCheck) -> None:
    """Its shape only: whether it can run (a port to check, a command to run) is the agent's to say."""
    check_enum(f"{field}.type", tpb.HealthCheck.Type, check.type)
    check_command(f"{field}.command", check.command)
    check_text(f"{field}.http.scheme", check.http.scheme, MAX_NAME_LENGTH)
    check_text(f"{field}.http.path", check.http.path, MAX_URL_PATH_LENGTH)
    check_count(f"{field}.http.statuses", check.http.statuses, MAX_HTTP_STATUSES)
    check_number(f"{field}.http.port", check.http.port, 0, MAX_PORT)
    check_number(f"{field}.tcp.port", check.tcp.port, 0, MAX_PORT)
    for name in ("delay_seconds", "interval_seconds", "timeout_seconds", "grace_period_seconds"):
        check_number(f"{field}.{name}", getattr(check, name), 0, MAX_HEALTH_CHECK_SECONDS)


def check_task_info(field: str, info: tpb.TaskInfo) -> None:
    check_id(f"{field}.task_id", info.task_id)
    check_text(f"{field}.name", info.name, MAX_NAME_LENGTH)
    check_id(f"{field}.agent_id", info.agent_id)
    check_resources(f"{field}.resources", info.resources)
    check_command(f"{field}.command", info.command)
    check_labels(f"{field}.labels", info.labels)
    grace = info.kill_policy.grace_period.nanoseconds
    check_number(f"{field}.kill_policy.grace_period.nanoseconds", grace, 0, MAX_KILL_GRACE_NANOSECONDS)
    if info.HasField("health_check"):
        check_health_check(f"{field}.health_check", info.health_check)


# ----------------------------------------------------------------------------------- frameworks and agents
def check_framework_info(info: rpb.FrameworkInfo, field: str = "framework_info") -> None:
    check_id(f"{field}.id", info.id)
    check_text(f"{field}.name", info.name, MAX_NAME_LENGTH)
    check_text(f"{field}.user", info.user, MAX_NAME_LENGTH)
    check_text(f"{field}.hostname", info.hostname, MAX_HOSTNAME_LENGTH)
    check_text(f"{field}.principal", info.principal, MAX_NAME_LENGTH)
    check_count(f"{field}.roles", info.roles, MAX_ROLES)
    for i, role in enumerate(info.roles):
        check_role(role, f"{field}.roles[{i}]")
    # Unknown capabilities are ignored, as Mesos ignores them (the master drops them); only their number counts.
    check_count(f"{field}.capabilities", info.capabilities, MAX_CAPABILITIES)
    check_number(f"{field}.failover_timeout", info.failover_timeout, 0, MAX_FAILOVER_TIMEOUT)
    check_labels(f"{field}.labels", info.labels)
    constraints = info.offer_constraints
    check_count(f"{field}.offer_constraints.attributes", constraints.attributes, MAX_OFFER_CONSTRAINTS)
    for i, c in enumerate(constraints.attributes):
        where = f"{field}.offer_constraints.attributes[{i}]"
        check_text(f"{where}.attribute", c.attribute, MAX_NAME_LENGTH)
        check_text(f"{where}.equals", c.equals, MAX_NAME_LENGTH)
        values = c.__getattribute__("in")
        check_count(f"{where}.in", values, MAX_CONSTRAINT_VALUES)
        for j, value in enumerate(values):
            check_text(f"{where}.in[{j}]", value, MAX_NAME_LENGTH)
        check_text(f"{where}.regex", c.regex, MAX_REGEX_LENGTH)
    check_resources(f"{field}.offer_constraints.min_resources", constraints.min_resources)
    minimums = info.min_allocatable_resources
    check_count(f"{field}.min_allocatable_resources", minimums, MAX_ROLES)
    for role, minimum in minimums.items():
        check_role(role, f"{field}.min_allocatable_resources role")
        where = f"{field}.min_allocatable_resources[{quoted(role)}].alternatives"
        check_count(where, minimum.alternatives, MAX_MIN_ALLOCATABLE_ALTERNATIVES)
        for j, alternative in enumerate(minimum.alternatives):
            check_resources(f"{where}[{j}].resources", alternative.resources)


def check_agent_info(info: rpb.AgentInfo, field: str = "agent_info") -> None:
    check_id(f"{field}.id", info.id)
    check_text(f"{field}.hostname", info.hostname, MAX_HOSTNAME_LENGTH)
    check_text(f"{field}.address", info.address, MAX_ADDRESS_LENGTH)
    check_resources(f"{field}.resources", info.resources)
    check_attributes(f"{field}.attributes", info.attributes)


# ----------------------------------------------------------------------------------- scheduler calls
def check_filters(field: str, filters: scheduler_pb2.Filters) -> None:
    if filters.HasField("refuse_seconds"):
        check_number(f"{field}.refuse_seconds", filters.refuse_seconds, 0, MAX_REFUSE_SECONDS)


def check_offer_ids(field: str, offer_ids: Sequence[str], limit: int) -> None:
    check_count(field, offer_ids, limit)
    for i, offer_id in enumerate(offer_ids):
        check_id(f"{field}[{i}]", offer_id)


def check_accept(call: scheduler_pb2.Call.Accept) -> None:
    """ACCEPT: how many offers, operations and tasks, and the shape of each."""
    check_offer_ids("offer_ids", call.offer_ids, MAX_OFFER_IDS_PER_ACCEPT)
    check_count("operations", call.operations, MAX_OPERATIONS_PER_ACCEPT)
    tasks = sum(len(operation.launch.task_infos) for operation in call.operations)
    if tasks > MAX_TASKS_PER_ACCEPT:
        raise CallError(f"operations: {tasks} tasks to launch in all, at most {MAX_TASKS_PER_ACCEPT}")
    for i, operation in enumerate(call.operations):
        where = f"operations[{i}]"
        check_id(f"{where}.id", operation.id)
        for j, info in enumerate(operation.launch.task_infos):
            check_task_info(f"{where}.launch.task_infos[{j}]", info)
        check_resources(f"{where}.reserve.resources", operation.reserve.resources)
        check_resources(f"{where}.unreserve.resources", operation.unreserve.resources)
    check_filters("filters", call.filters)


def check_decline(call: scheduler_pb2.Call.Decline) -> None:
    check_offer_ids("offer_ids", call.offer_ids, MAX_OFFER_IDS_PER_DECLINE)
    check_filters("filters", call.filters)


def check_roles(field: str, roles: Sequence[str]) -> None:
    """The roles a REVIVE or SUPPRESS names."""
    check_count(field, roles, MAX_ROLES)
    for i, role in enumerate(roles):
        check_role(role, f"{field}[{i}]")


def check_kill(call: scheduler_pb2.Call.Kill) -> None:
    check_id("kill.task_id", call.task_id, required=True)
    check_id("kill.agent_id", call.agent_id)
    grace = call.kill_policy.grace_period.nanoseconds
    check_number("kill.kill_policy.grace_period.nanoseconds", grace, 0, MAX_KILL_GRACE_NANOSECONDS)


def check_acknowledgements(acks: Sequence[tpb.Acknowledgement]) -> None:
    check_count("acknowledgements", acks, MAX_ACKNOWLEDGEMENTS)
    for i, ack in enumerate(acks):
        where = f"acknowledgements[{i}]"
        check_id(f"{where}.task_id", ack.task_id)
        check_id(f"{where}.agent_id", ack.agent_id)
        check_id(f"{where}.framework_id", ack.framework_id)
        check_length(f"{where}.uuid", ack.uuid, MAX_UUID_BYTES)


def check_reconcile(tasks: Sequence[scheduler_pb2.Call.Reconcile.Task]) -> None:
    check_count("reconcile.tasks", tasks, MAX_RECONCILE_TASKS)
    for i, task in enumerate(tasks):
        check_id(f"reconcile.tasks[{i}].task_id", task.task_id)
        check_id(f"reconcile.tasks[{i}].agent_id", task.agent_id)


def check_message(call: scheduler_pb2.Call.Message) -> None:
    """A framework message; with a `path`, one for a command task (the task id its executor id), written to that
    file of its sandbox: a plain file name (`scheduler_sdk.sandbox_files`)."""
    check_id("message.agent_id", call.agent_id)
    check_id("message.executor_id", call.executor_id, required=bool(call.path))
    check_length("message.data", call.data, MAX_MESSAGE_DATA)
    if call.path:
        check_length("message.path", call.path, MAX_FILE_NAME_LENGTH)
        problem = file_name_problem(call.path)
        if problem is not None:
            raise CallError(f"message.path {quoted(call.path)}: {problem}")


# ----------------------------------------------------------------------------------- operator calls
def check_weights(weights: Mapping[str, float]) -> None:
    """UpdateWeights: a bounded number of roles, each weight a finite number from MIN_WEIGHT to MAX_WEIGHT."""
    check_count("weights", weights, MAX_WEIGHTS)
    for role, weight in weights.items():
        check_role(role, "weights role")
        check_number(f"weight of role {quoted(role)}", weight, MIN_WEIGHT, MAX_WEIGHT)
