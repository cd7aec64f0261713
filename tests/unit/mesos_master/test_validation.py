"""`mesos_master.validation`: every check of a call, driven directly (no master, no allocator)."""

from __future__ import annotations

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.allocator.base import Quota
from mesos_master.records import Offer, Task
from mesos_master.validation import (
    CallError,
    accept_offers,
    call_framework_error,
    call_roles,
    task_error,
    validate_acknowledgements,
    validate_agent_info,
    validate_framework_info,
    validate_kill,
    validate_operator_reservation,
    validate_quota,
    validate_reservation_operation,
    validate_role,
    validate_updated_framework_info,
    validate_weights,
)
from scheduler_sdk.resources import Resources

OfferOperation = scheduler_pb2.Offer_Operation
parse = Resources.parse


# ============================================================================================ roles
@pytest.mark.parametrize("role", ["*", "eng", "eng/batch", "a.b", "team-1/x_y"])
def test_valid_roles_pass(role: str) -> None:
    validate_role(role)


@pytest.mark.parametrize(
    ("role", "fragment"),
    [
        ("", "must not be empty"),
        ("a b", "invalid role"),
        ("eng/../x", "invalid role"),
        ("eng/", "invalid role"),
        ("-x", "invalid role"),
        ("./x", "invalid role"),
    ],
)
def test_invalid_roles_are_refused(role: str, fragment: str) -> None:
    with pytest.raises(CallError, match=fragment):
        validate_role(role)


def test_call_roles_are_the_named_ones_or_all_of_the_frameworks() -> None:
    assert call_roles([], ["a", "b"], "revive") == ["a", "b"]
    assert call_roles(["b"], ["a", "b"], "revive") == ["b"]
    with pytest.raises(CallError, match=r"suppress: 'c' not among the framework's roles \(a, b\)"):
        call_roles(["c"], ["a", "b"], "suppress")


# ============================================================================================ frameworks
@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"name": ""}, "name must not be empty"),
        ({"name": "x", "roles": ["a", "a"]}, "must not repeat a role"),
        ({"name": "x", "roles": [""]}, "must not be empty"),
        ({"name": "x", "roles": ["a b"]}, "invalid role"),
        ({"name": "x", "failover_timeout": -1}, "failover_timeout: -1.0, must be a number from 0 to"),
    ],
)
def test_framework_info_is_checked(kw: dict[str, object], fragment: str) -> None:
    with pytest.raises(CallError, match=fragment):
        validate_framework_info(rpb.FrameworkInfo(**kw))  # type: ignore[arg-type]


def test_a_good_framework_info_passes() -> None:
    validate_framework_info(rpb.FrameworkInfo(name="x", roles=["a", "b/c"], failover_timeout=60))


def constrained(**constraint: object) -> rpb.FrameworkInfo:
    info = rpb.FrameworkInfo(name="x")
    info.offer_constraints.attributes.add(**constraint)  # type: ignore[arg-type]
    return info


@pytest.mark.parametrize(
    ("info", "fragment"),
    [
        (constrained(attribute="zone"), "give exactly one of equals, in, regex"),
        (constrained(equals="z1"), r"'\(no attribute\)'"),
        (constrained(attribute="zone", equals="z1", regex="z.*"), "exactly one"),
        (constrained(attribute="zone", regex="("), "bad regex"),
    ],
)
def test_offer_constraints_are_checked(info: rpb.FrameworkInfo, fragment: str) -> None:
    with pytest.raises(CallError, match=fragment):
        validate_framework_info(info)


def test_good_offer_constraints_pass() -> None:
    validate_framework_info(constrained(attribute="zone", regex="z[12]"))
    validate_framework_info(constrained(attribute="zone", equals="z1"))


def test_bad_minimum_resources_are_refused() -> None:
    info = rpb.FrameworkInfo(name="x")
    info.offer_constraints.min_resources.add(name="cpus", type=rpb.Value.SCALAR, scalar=rpb.Value.Scalar(value=-1))
    with pytest.raises(CallError, match="framework_info"):
        validate_framework_info(info)


def test_an_updated_framework_info_keeps_its_id() -> None:
    validate_updated_framework_info(rpb.FrameworkInfo(name="x"), "F1")
    validate_updated_framework_info(rpb.FrameworkInfo(id="F1", name="x"), "F1")
    with pytest.raises(CallError, match="is not this framework"):
        validate_updated_framework_info(rpb.FrameworkInfo(id="F2", name="x"), "F1")
    with pytest.raises(CallError, match="name"):
        validate_updated_framework_info(rpb.FrameworkInfo(id="F1"), "F1")


def test_a_call_on_a_stream_names_that_stream_framework_or_none() -> None:
    assert call_framework_error("", "F1") is None
    assert call_framework_error("F1", "F1") is None
    assert call_framework_error("F2", "F1") == "call names framework 'F2', but this stream belongs to F1"


# ============================================================================================ agents
@pytest.mark.parametrize(
    ("hostname", "resources", "fragment"),
    [("", "cpus:1", "hostname"), ("h", "", "must not be empty")],
)
def test_agent_info_is_checked(hostname: str, resources: str, fragment: str) -> None:
    info = rpb.AgentInfo(hostname=hostname, resources=parse(resources).to_proto() if resources else [])
    with pytest.raises(CallError, match=fragment):
        validate_agent_info(info)


def test_agent_info_with_bad_resources_is_refused() -> None:
    info = rpb.AgentInfo(hostname="h")
    info.resources.add(name="cpus", type=rpb.Value.SCALAR, scalar=rpb.Value.Scalar(value=-2))
    with pytest.raises(CallError, match=r"agent_info\.resources"):
        validate_agent_info(info)


# ============================================================================================ accept
def offer(offer_id: str, framework_id: str = "F1", agent_id: str = "S1", role: str = "*") -> Offer:
    return Offer(offer_id, framework_id, agent_id, role, parse("cpus:2;mem:256"), 0.0)


def test_accepted_offers_must_be_outstanding_own_and_on_one_agent() -> None:
    outstanding = {o.id: o for o in [offer("O1"), offer("O2", agent_id="S2"), offer("O3", "F2"), offer("O4")]}
    valid, problems = accept_offers("F1", ["O1", "O4"], outstanding)
    assert [o.id for o in valid] == ["O1", "O4"] and problems == []
    valid, problems = accept_offers("F1", ["O1", "O1", "O9", "O3", "O2"], outstanding)
    assert [o.id for o in valid] == ["O1", "O2"]
    assert problems == [
        "offer 'O1' appears twice",
        "offer 'O9' is no longer valid (unknown, used, declined or rescinded)",
        "offer 'O3' belongs to another framework",
        "offers from different agents (S1, S2) in one accept",
    ]
    assert accept_offers("F1", [], outstanding) == ([], ["an accept must name at least one offer"])


def test_accepted_offers_are_allocated_to_one_role() -> None:
    outstanding = {"O1": offer("O1", role="a"), "O2": offer("O2", role="b")}
    _, problems = accept_offers("F1", ["O1", "O2"], outstanding)
    assert problems == ["offers allocated to different roles (a, b) in one accept"]


def task_info(task_id: str = "t1", resources: str = "cpus:1;mem:64", command: str = "true", **kw: str) -> tpb.TaskInfo:
    info = tpb.TaskInfo(task_id=task_id, resources=parse(resources).to_proto() if resources else [], **kw)
    info.command.value = command
    return info


def test_a_valid_task_launches() -> None:
    assert task_error(task_info(), "S1", parse("cpus:2;mem:256"), {}, set()) is None


@pytest.mark.parametrize(
    ("info", "fragment"),
    [
        (task_info(task_id=""), "task_id must not be empty"),
        (task_info(task_id="dup"), "duplicate id"),
        (task_info(task_id="active"), "duplicate id"),
        (task_info(agent_id="S2"), "names agent 'S2' but the offers are from agent S1"),
        (task_info(command=""), "has no command"),
        (task_info(resources="ports:[1-2]"), "uses no resources"),
        (task_info(resources="cpus:4"), "uses more resources than offered"),
    ],
)
def test_an_invalid_task_says_why(info: tpb.TaskInfo, fragment: str) -> None:
    known = {
        "active": Task("F1", "S1", tpb.TaskInfo(task_id="active"), parse("cpus:1"), state=tpb.TASK_RUNNING),
        "over": Task("F1", "S1", tpb.TaskInfo(task_id="over"), parse("cpus:1"), state=tpb.TASK_FINISHED),
    }
    reason = task_error(info, "S1", parse("cpus:2;mem:256;ports:[1-9]"), known, {"dup"})
    assert reason is not None and fragment in reason


def test_a_task_may_reuse_the_id_of_a_finished_one() -> None:
    known = {"t1": Task("F1", "S1", tpb.TaskInfo(task_id="t1"), parse("cpus:1"), state=tpb.TASK_FINISHED)}
    assert task_error(task_info("t1"), "S1", parse("cpus:2;mem:256"), known, set()) is None


def reservation(kind: int, resources: str) -> scheduler_pb2.Offer_Operation:
    operation = OfferOperation(type=kind)  # type: ignore[arg-type]
    target = operation.reserve if kind == OfferOperation.RESERVE else operation.unreserve
    target.resources.extend(parse(resources).to_proto())
    return operation


def test_a_reservation_operation_returns_what_it_names() -> None:
    got = validate_reservation_operation(reservation(OfferOperation.RESERVE, "cpus(eng/a):1"), "eng", ["eng"])
    assert got == parse("cpus(eng/a):1")
    got = validate_reservation_operation(reservation(OfferOperation.UNRESERVE, "cpus(ops):1"), "eng", ["ops"])
    assert got == parse("cpus(ops):1")  # an UNRESERVE need not be for the offers' role


@pytest.mark.parametrize(
    ("kind", "resources", "fragment"),
    [
        (OfferOperation.RESERVE, "", "no resources given"),
        (OfferOperation.RESERVE, "cpus:1", "must name the role"),
        (OfferOperation.RESERVE, "cpus(ops):1", "neither the offers' allocation role 'eng' nor a role below it"),
        (OfferOperation.RESERVE, "cpus(engineering):1", "neither the offers' allocation role"),
        (OfferOperation.UNRESERVE, "cpus(ops):1", "is not one of the framework's roles (eng)"),
    ],
)
def test_a_bad_reservation_operation_is_refused(kind: int, resources: str, fragment: str) -> None:
    with pytest.raises(CallError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        validate_reservation_operation(reservation(kind, resources), "eng", ["eng"])


# ============================================================================================ other calls
def test_kill_and_acknowledgement_are_checked() -> None:
    validate_kill(scheduler_pb2.Call.Kill(task_id="t1"))
    with pytest.raises(CallError, match=r"kill\.task_id"):
        validate_kill(scheduler_pb2.Call.Kill())
    validate_acknowledgements([tpb.Acknowledgement(task_id="t1", uuid=b"u")])
    with pytest.raises(CallError, match="'t1' has no uuid"):
        validate_acknowledgements([tpb.Acknowledgement(task_id="t1")])


# ============================================================================================ operator
def test_operator_reservations_name_valid_roles() -> None:
    validate_operator_reservation(parse("cpus(eng):1;mem(eng/a):64"))
    with pytest.raises(CallError, match="no resources given"):
        validate_operator_reservation(Resources.empty())
    with pytest.raises(CallError, match=r"e\.g\. cpus\(eng\):2"):
        validate_operator_reservation(parse("cpus:1"))


def test_weights_are_positive_for_valid_roles() -> None:
    validate_weights({"eng": 2.0, "ops": 0.5})
    with pytest.raises(CallError, match=r"weight of role 'eng': 0.0, must be a number from 0.001 to 1e\+06"):
        validate_weights({"eng": 0.0})
    with pytest.raises(CallError, match="invalid role"):
        validate_weights({"a b": 1.0})


def test_quota_is_checked_against_the_role_tree() -> None:
    validate_quota({}, "eng", Quota(parse("cpus:2"), None))
    with pytest.raises(CallError, match="exceeds the limit"):
        validate_quota({}, "eng", Quota(parse("cpus:4"), parse("cpus:2")))
    with pytest.raises(CallError, match="must not be empty"):
        validate_quota({}, "", None)
