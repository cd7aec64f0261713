"""`mesos_master.bounds`: every bound, driven through the check the core calls. At the bound a call passes; one
over, it is a CallError that names the field (and says by how much), with what it quotes cut short."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master import bounds as b
from mesos_master.errors import CallError
from mesos_master.validation import (
    call_roles,
    operator_resources,
    validate_acknowledgements,
    validate_agent_info,
    validate_framework_info,
    validate_kill,
    validate_weights,
)
from scheduler_sdk.quoting import MESSAGE_CHARACTERS, QUOTED_CHARACTERS

Call = scheduler_pb2.Call
Op = scheduler_pb2.Offer_Operation
Capability = rpb.FrameworkInfo.Capability


def cpus(name: str = "cpus") -> rpb.Resource:
    return rpb.Resource(name=name, type=rpb.Value.SCALAR, scalar=rpb.Value.Scalar(value=1))


# ------------------------------------------------------------------------------------- the calls, by size n
def framework(**kw: object) -> None:
    validate_framework_info(rpb.FrameworkInfo(**{"name": "fw", **kw}))  # type: ignore[arg-type]


def constraint(**kw: object) -> None:
    info = rpb.FrameworkInfo(name="fw")
    info.offer_constraints.attributes.add(**{"attribute": "zone", **kw})  # type: ignore[arg-type]
    validate_framework_info(info)


def minimum(alternatives: int) -> None:
    info = rpb.FrameworkInfo(name="fw", roles=["eng"])
    for _ in range(alternatives):
        info.min_allocatable_resources["eng"].alternatives.add(resources=[cpus()])
    validate_framework_info(info)


def accept(tasks: list[tpb.TaskInfo] | None = None, **kw: object) -> None:
    operations = [Op(type=Op.LAUNCH, launch=Op.Launch(task_infos=tasks or []))]
    b.check_accept(Call.Accept(**{"offer_ids": ["O1"], "operations": operations, **kw}))  # type: ignore[arg-type]


def launch(**kw: object) -> None:
    accept([tpb.TaskInfo(**{"task_id": "t1", **kw})])  # type: ignore[arg-type]


def command(**kw: object) -> None:
    launch(command=rpb.CommandInfo(**kw))  # type: ignore[arg-type]


def environment(n: int, size: int = 1) -> None:
    variables = [rpb.Environment.Variable(name=f"V{i}", value="x" * size) for i in range(n)]
    command(environment=rpb.Environment(variables=variables))


def health(**kw: object) -> None:
    launch(health_check=tpb.HealthCheck(**{"type": tpb.HealthCheck.HTTP, **kw}))  # type: ignore[arg-type]


def agent(**kw: object) -> None:
    validate_agent_info(rpb.AgentInfo(**{"hostname": "h", "resources": [cpus()], **kw}))  # type: ignore[arg-type]


def text_attributes(n: int, size: int = 1) -> list[rpb.Attribute]:
    return [rpb.Attribute(name=f"a{i}", type=rpb.Value.TEXT, text=rpb.Value.Text(value="v" * size)) for i in range(n)]


def labels(n: int, key: int = 1, value: int = 1) -> rpb.Labels:
    return rpb.Labels(labels=[rpb.Label(key=f"k{i}".ljust(key, "k"), value="v" * value) for i in range(n)])


def resources(n: int) -> list[rpb.Resource]:
    return [cpus(f"r{i}") for i in range(n)]


def a_set(n: int) -> list[rpb.Resource]:
    return [rpb.Resource(name="zones", type=rpb.Value.SET, set=rpb.Value.Set(item=[f"z{i}" for i in range(n)]))]


def ranges(n: int) -> list[rpb.Resource]:
    rs = [rpb.Value.Range(begin=2 * i, end=2 * i) for i in range(n)]
    return [rpb.Resource(name="ports", type=rpb.Value.RANGES, ranges=rpb.Value.Ranges(range=rs))]


def tasks(n: int) -> list[tpb.TaskInfo]:
    return [tpb.TaskInfo(task_id=f"t{i}") for i in range(n)]


# What is checked, how a call of size n is made, the bound, and the field a violation names.
SIZES: list[tuple[str, Callable[[int], None], int, str]] = [
    # FrameworkInfo
    ("framework id", lambda n: framework(id="f" * n), b.MAX_ID_LENGTH, "framework_info.id"),
    ("framework name", lambda n: framework(name="n" * n), b.MAX_NAME_LENGTH, "framework_info.name"),
    ("framework user", lambda n: framework(user="u" * n), b.MAX_NAME_LENGTH, "framework_info.user"),
    ("framework hostname", lambda n: framework(hostname="h" * n), b.MAX_HOSTNAME_LENGTH, "framework_info.hostname"),
    ("principal", lambda n: framework(principal="p" * n), b.MAX_NAME_LENGTH, "framework_info.principal"),
    ("roles", lambda n: framework(roles=[f"r{i}" for i in range(n)]), b.MAX_ROLES, "framework_info.roles"),
    ("role length", lambda n: framework(roles=["r" * n]), b.MAX_ROLE_LENGTH, "framework_info.roles[0]"),
    (
        "capabilities",
        lambda n: framework(capabilities=[Capability(type=Capability.GPU_RESOURCES)] * n),
        b.MAX_CAPABILITIES,
        "framework_info.capabilities",
    ),
    ("framework labels", lambda n: framework(labels=labels(n)), b.MAX_LABELS, "framework_info.labels"),
    (
        "label key",
        lambda n: framework(labels=labels(1, key=n)),
        b.MAX_NAME_LENGTH,
        "framework_info.labels[0].key",
    ),
    (
        "label value",
        lambda n: framework(labels=labels(1, value=n)),
        b.MAX_LABEL_VALUE_LENGTH,
        "framework_info.labels[0].value",
    ),
    (
        "offer constraints",
        lambda n: framework(
            offer_constraints=rpb.OfferConstraints(
                attributes=[rpb.AttributeConstraint(attribute="zone", equals="a")] * n
            )
        ),
        b.MAX_OFFER_CONSTRAINTS,
        "framework_info.offer_constraints.attributes",
    ),
    (
        "constraint values",
        lambda n: constraint(**{"in": [f"z{i}" for i in range(n)]}),
        b.MAX_CONSTRAINT_VALUES,
        "framework_info.offer_constraints.attributes[0].in",
    ),
    (
        "constraint regex",
        lambda n: constraint(regex="a" * n),
        b.MAX_REGEX_LENGTH,
        "framework_info.offer_constraints.attributes[0].regex",
    ),
    (
        "minimum resources",
        lambda n: framework(offer_constraints=rpb.OfferConstraints(min_resources=resources(n))),
        b.MAX_RESOURCES,
        "framework_info.offer_constraints.min_resources",
    ),
    (
        "minimum alternatives",
        minimum,
        b.MAX_MIN_ALLOCATABLE_ALTERNATIVES,
        "framework_info.min_allocatable_resources['eng'].alternatives",
    ),
    # ACCEPT
    ("offer ids", lambda n: accept(offer_ids=[f"O{i}" for i in range(n)]), b.MAX_OFFER_IDS_PER_ACCEPT, "offer_ids"),
    ("offer id", lambda n: accept(offer_ids=["o" * n]), b.MAX_ID_LENGTH, "offer_ids[0]"),
    (
        "operations",
        lambda n: b.check_accept(Call.Accept(offer_ids=["O1"], operations=[Op(type=Op.LAUNCH)] * n)),
        b.MAX_OPERATIONS_PER_ACCEPT,
        "operations",
    ),
    ("tasks per accept", lambda n: accept(tasks(n)), b.MAX_TASKS_PER_ACCEPT, "operations"),
    ("task id", lambda n: launch(task_id="t" * n), b.MAX_ID_LENGTH, "operations[0].launch.task_infos[0].task_id"),
    ("task name", lambda n: launch(name="n" * n), b.MAX_NAME_LENGTH, "operations[0].launch.task_infos[0].name"),
    (
        "task agent id",
        lambda n: launch(agent_id="a" * n),
        b.MAX_ID_LENGTH,
        "operations[0].launch.task_infos[0].agent_id",
    ),
    (
        "task resources",
        lambda n: launch(resources=resources(n)),
        b.MAX_RESOURCES,
        "operations[0].launch.task_infos[0].resources",
    ),
    (
        "resource name",
        lambda n: launch(resources=[cpus("c" * n)]),
        b.MAX_ID_LENGTH,
        "operations[0].launch.task_infos[0].resources[0].name",
    ),
    (
        "set items",
        lambda n: launch(resources=a_set(n)),
        b.MAX_SET_ITEMS,
        "operations[0].launch.task_infos[0].resources[0].set",
    ),
    (
        "ranges",
        lambda n: launch(resources=ranges(n)),
        b.MAX_RANGES,
        "operations[0].launch.task_infos[0].resources[0].ranges",
    ),
    ("task labels", lambda n: launch(labels=labels(n)), b.MAX_LABELS, "operations[0].launch.task_infos[0].labels"),
    (
        "command value",
        lambda n: command(value="x" * n),
        b.MAX_COMMAND_LENGTH,
        "operations[0].launch.task_infos[0].command.value",
    ),
    (
        "arguments",
        lambda n: command(arguments=["a"] * n),
        b.MAX_ARGUMENTS,
        "operations[0].launch.task_infos[0].command.arguments",
    ),
    (
        "argument",
        lambda n: command(arguments=["a" * n]),
        b.MAX_COMMAND_LENGTH,
        "operations[0].launch.task_infos[0].command.arguments[0]",
    ),
    (
        "environment",
        environment,
        b.MAX_ENVIRONMENT,
        "operations[0].launch.task_infos[0].command.environment",
    ),
    (
        "environment value",
        lambda n: environment(1, n),
        b.MAX_COMMAND_LENGTH,
        "operations[0].launch.task_infos[0].command.environment[0].value",
    ),
    (
        "command in all",
        lambda n: command(value="x" * (n - 16 * b.MAX_COMMAND_LENGTH), arguments=["a" * b.MAX_COMMAND_LENGTH] * 16),
        b.MAX_COMMAND_TOTAL,
        "operations[0].launch.task_infos[0].command",
    ),
    (
        "command user",
        lambda n: command(user="u" * n),
        b.MAX_NAME_LENGTH,
        "operations[0].launch.task_infos[0].command.user",
    ),
    (
        "health check path",
        lambda n: health(http=tpb.HealthCheck.HTTPCheckInfo(path="/" * n)),
        b.MAX_URL_PATH_LENGTH,
        "operations[0].launch.task_infos[0].health_check.http.path",
    ),
    (
        "health check statuses",
        lambda n: health(http=tpb.HealthCheck.HTTPCheckInfo(statuses=[200] * n)),
        b.MAX_HTTP_STATUSES,
        "operations[0].launch.task_infos[0].health_check.http.statuses",
    ),
    (
        "reserve resources",
        lambda n: b.check_accept(
            Call.Accept(offer_ids=["O1"], operations=[Op(type=Op.RESERVE, reserve=Op.Reserve(resources=resources(n)))])
        ),
        b.MAX_RESOURCES,
        "operations[0].reserve.resources",
    ),
    # other scheduler calls
    (
        "declined offers",
        lambda n: b.check_decline(Call.Decline(offer_ids=["O1"] * n)),
        b.MAX_OFFER_IDS_PER_DECLINE,
        "offer_ids",
    ),
    ("revived roles", lambda n: call_roles(["r"] * n, ["r"], "revive"), b.MAX_ROLES, "revive.roles"),
    ("killed task id", lambda n: validate_kill(Call.Kill(task_id="t" * n)), b.MAX_ID_LENGTH, "kill.task_id"),
    (
        "acknowledgements",
        lambda n: validate_acknowledgements([tpb.Acknowledgement(task_id="t1", uuid=b"u")] * n),
        b.MAX_ACKNOWLEDGEMENTS,
        "acknowledgements",
    ),
    (
        "acknowledged task id",
        lambda n: validate_acknowledgements([tpb.Acknowledgement(task_id="t" * n, uuid=b"u")]),
        b.MAX_ID_LENGTH,
        "acknowledgements[0].task_id",
    ),
    (
        "acknowledged uuid",
        lambda n: validate_acknowledgements([tpb.Acknowledgement(task_id="t1", uuid=b"u" * n)]),
        b.MAX_UUID_BYTES,
        "acknowledgements[0].uuid",
    ),
    (
        "reconciled tasks",
        lambda n: b.check_reconcile([Call.Reconcile.Task(task_id="t1")] * n),
        b.MAX_RECONCILE_TASKS,
        "reconcile.tasks",
    ),
    (
        "message data",
        lambda n: b.check_message(Call.Message(agent_id="S1", data=b"d" * n)),
        b.MAX_MESSAGE_DATA,
        "message.data",
    ),
    (
        "executor id",
        lambda n: b.check_message(Call.Message(agent_id="S1", executor_id="e" * n)),
        b.MAX_ID_LENGTH,
        "message.executor_id",
    ),
    # agents
    ("agent id", lambda n: agent(id="a" * n), b.MAX_ID_LENGTH, "agent_info.id"),
    ("agent hostname", lambda n: agent(hostname="h" * n), b.MAX_HOSTNAME_LENGTH, "agent_info.hostname"),
    ("agent address", lambda n: agent(address="a" * n), b.MAX_ADDRESS_LENGTH, "agent_info.address"),
    ("agent resources", lambda n: agent(resources=resources(n)), b.MAX_RESOURCES, "agent_info.resources"),
    ("attributes", lambda n: agent(attributes=text_attributes(n)), b.MAX_ATTRIBUTES, "agent_info.attributes"),
    (
        "attribute text",
        lambda n: agent(attributes=text_attributes(1, n)),
        b.MAX_NAME_LENGTH,
        "agent_info.attributes[0].text",
    ),
    # operator calls
    ("operator resources", lambda n: operator_resources("resources", resources(n)), b.MAX_RESOURCES, "resources"),
    ("weights", lambda n: validate_weights({f"r{i}": 1.0 for i in range(n)}), b.MAX_WEIGHTS, "weights"),
]


@pytest.mark.parametrize(("make", "limit", "field"), [c[1:] for c in SIZES], ids=[c[0] for c in SIZES])
def test_at_the_bound_a_call_passes_and_one_over_it_is_refused_naming_the_field(
    make: Callable[[int], None], limit: int, field: str
) -> None:
    make(limit)
    with pytest.raises(CallError) as refused:
        make(limit + 1)
    message = str(refused.value)
    assert message.startswith(f"{field}: {limit + 1} "), message
    assert message.endswith(f", at most {limit}"), message


# What is checked, how a call with the number x is made, the largest (or smallest) allowed, and the field.
NUMBERS: list[tuple[str, Callable[[float], None], float, float, str]] = [
    ("failover timeout", lambda x: framework(failover_timeout=x), 0, b.MAX_FAILOVER_TIMEOUT, "failover_timeout"),
    ("weight", lambda x: validate_weights({"eng": x}), b.MIN_WEIGHT, b.MAX_WEIGHT, "weight of role 'eng'"),
    (
        "refuse seconds",
        lambda x: b.check_decline(Call.Decline(filters=scheduler_pb2.Filters(refuse_seconds=x))),
        0,
        b.MAX_REFUSE_SECONDS,
        "filters.refuse_seconds",
    ),
    (
        "health check interval",
        lambda x: health(interval_seconds=x),
        0,
        b.MAX_HEALTH_CHECK_SECONDS,
        "health_check.interval_seconds",
    ),
    (
        "attribute scalar",
        lambda x: agent(attributes=[rpb.Attribute(name="g", type=rpb.Value.SCALAR, scalar=rpb.Value.Scalar(value=x))]),
        -1e12,
        1e12,
        "agent_info.attributes[0].scalar",
    ),
]


@pytest.mark.parametrize(("make", "low", "high", "field"), [c[1:] for c in NUMBERS], ids=[c[0] for c in NUMBERS])
def test_a_number_is_finite_and_within_its_bounds(
    make: Callable[[float], None], low: float, high: float, field: str
) -> None:
    make(low)
    make(high)
    for bad in (math.nextafter(high, math.inf), math.nextafter(low, -math.inf), math.inf, -math.inf, math.nan):
        with pytest.raises(CallError, match=f"{re.escape(field)}: .*, must be a number from"):
            make(bad)


def test_port_and_grace_bounds_take_whole_numbers() -> None:
    health(http=tpb.HealthCheck.HTTPCheckInfo(port=65535))
    with pytest.raises(CallError, match=r"health_check\.http\.port: 65536, must be a number from 0 to 65535"):
        health(http=tpb.HealthCheck.HTTPCheckInfo(port=65536))
    launch(kill_policy=rpb.KillPolicy(grace_period=rpb.DurationInfo(nanoseconds=b.MAX_KILL_GRACE_NANOSECONDS)))
    with pytest.raises(CallError, match=r"kill_policy\.grace_period\.nanoseconds: -1"):
        launch(kill_policy=rpb.KillPolicy(grace_period=rpb.DurationInfo(nanoseconds=-1)))


# ------------------------------------------------------------------------------------- the id alphabet
@pytest.mark.parametrize("good", ["t1", "!", "a.b-c_d:e@f+g=h,i%j~k#l(m)[n]", "..x", "x" * 255, "M-F12"])
def test_ids_of_the_safe_alphabet_pass(good: str) -> None:
    b.check_id("task_id", good)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("a/b", "'/' is not allowed in an id"),
        ("a\\b", r"'\\\\' is not allowed in an id"),
        ("a b", "' ' is not allowed in an id"),
        ("a\tb", r"'\\t' is not allowed in an id"),
        ("a\x00b", r"'\\x00' is not allowed in an id"),
        ("caf\u00e9", "'\u00e9' is not allowed in an id"),
        (".", "must not be '.'"),
        ("..", "must not be '..'"),
    ],
)
def test_ids_outside_the_alphabet_are_refused_naming_the_field(bad: str, why: str) -> None:
    with pytest.raises(CallError, match=f"^task_id.*{why}"):
        b.check_id("task_id", bad)


def test_an_id_is_required_only_where_the_call_needs_one() -> None:
    b.check_id("framework_info.id", "")
    with pytest.raises(CallError, match=r"kill\.task_id must not be empty"):
        validate_kill(Call.Kill())


def test_a_long_bad_id_is_quoted_short() -> None:
    with pytest.raises(CallError) as refused:
        b.check_id("task_id", "a b" * 80)
    assert "…(240 characters)" in str(refused.value)
    assert len(str(refused.value)) < 200


# ------------------------------------------------------------------------------------- names, enums, roles
@pytest.mark.parametrize("field", ["name", "user", "hostname", "principal"])
def test_a_name_is_one_printable_line(field: str) -> None:
    framework(**{field: "caf\u00e9 \u2603"})
    with pytest.raises(CallError, match=f"framework_info.{field} 'a\\\\nb': control characters are not allowed"):
        framework(**{field: "a\nb"})


def test_a_command_may_span_lines_but_holds_no_nul() -> None:
    command(value="echo a\necho b")
    with pytest.raises(CallError, match=r"command\.value 'a\\x00b': a NUL character is not allowed"):
        command(value="a\x00b")
    with pytest.raises(CallError, match=r"environment\[0\]\.name 'A=B': '=' is not allowed in a name"):
        command(environment=rpb.Environment(variables=[rpb.Environment.Variable(name="A=B")]))


def test_an_unknown_health_check_type_or_attribute_type_refuses_the_call() -> None:
    with pytest.raises(CallError, match=r"health_check\.type: unknown \(77\) is not a known value"):
        health(type=77)
    with pytest.raises(CallError, match=r"agent_info\.attributes\[0\]\.type: unknown \(9\) is not a known value"):
        agent(attributes=[rpb.Attribute(name="x", type=9)])  # type: ignore[arg-type]


def test_unknown_capabilities_are_no_error() -> None:
    framework(capabilities=[Capability(type=77), Capability(type=Capability.PARTITION_AWARE)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["a\x01b", "a\u00e9", "eng/a b", "eng\\x", "r" * 256, "eng//a", "eng/.", "-eng", "eng/-a"]
)
def test_roles_follow_mesos_rules_and_are_bounded(bad: str) -> None:
    with pytest.raises(CallError, match=r"^framework_info\.roles\[1\]: "):
        framework(roles=["ok", bad])


def test_a_resource_role_is_a_role() -> None:
    reserved = cpus()
    reserved.role = "eng/a"
    launch(resources=[reserved])
    reserved.role = "a b"
    with pytest.raises(CallError, match=r"task_infos\[0\]\.resources\[0\]\.role: invalid role 'a b'"):
        launch(resources=[reserved])


def test_every_call_error_message_is_bounded() -> None:
    assert len(str(CallError("x" * 100_000))) < MESSAGE_CHARACTERS + 40
    with pytest.raises(CallError) as refused:
        call_roles(["r" * 200], ["a"], "revive")
    assert f"{'r' * QUOTED_CHARACTERS}'…(200 characters) not among" in str(refused.value)


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x80), min_size=1, max_size=260))
def test_prop_a_plain_id_is_one_check_id_passes(value: str) -> None:
    # The hot paths (every task of every ACCEPT) test `is_plain_id` before they build a field name for check_id.
    try:
        b.check_id("x", value)
        passes = True
    except CallError:
        passes = False
    assert b.is_plain_id(value) == passes


def test_a_bad_resource_in_a_task_is_still_named() -> None:
    info = tpb.TaskInfo(task_id="t", resources=[cpus(), cpus("mem/x")])
    with pytest.raises(CallError, match=re.escape("t.resources[1].name 'mem/x'")):
        b.check_task_info("t", info)
    info = tpb.TaskInfo(task_id="t", resources=[cpus(), rpb.Resource(name="cpus", role="-bad")])
    with pytest.raises(CallError, match=re.escape("t.resources[1].role: invalid role")):
        b.check_task_info("t", info)
    ranges = rpb.Resource(name="ports", type=rpb.Value.RANGES)
    ranges.ranges.range.extend(rpb.Value.Range(begin=i, end=i) for i in range(b.MAX_RANGES + 1))
    with pytest.raises(CallError, match=re.escape(f"t.resources[0].ranges: {b.MAX_RANGES + 1} entries")):
        b.check_task_info("t", tpb.TaskInfo(task_id="t", resources=[ranges]))
