"""The jobs placement for services and streams (placement.py, launching.py, role_scheduler.py): health checks and
version labels in the TaskInfo, the ports a task was launched with, lifecycles kept apart, draining agents told."""

from __future__ import annotations

import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.health import HealthPolicy
from scheduler_sdk.frameworks.jobs.launching import VERSION_LABEL, launch_task_info, task_request
from scheduler_sdk.frameworks.jobs.spec import HealthCheckSpec, TaskResources
from scheduler_sdk.placement import LifecycleAffinity
from scheduler_sdk.placement.model import Assignment
from tests.unit.scheduler_sdk.test_jobs_placement import Launch, role_offer, world

PORTS = (31005, 31000, 31001)  # as an assignment may list them: the task numbers them sorted


def info_of(launch: Launch, ports: tuple[int, ...] = PORTS) -> tpb.TaskInfo:
    req = task_request(launch)
    return launch_task_info(req, Assignment(req, "h1", "a1", ("o1",), ports=ports))


def served(port_index: int = 0, **kw: object) -> Launch:
    check = HealthCheckSpec("http", port_index=port_index, path="/health", **kw)  # type: ignore[arg-type]
    return Launch("web.r.web.0.0", resources=TaskResources(cpus=1, mem=10, ports=3), health_check=check)


# ---------------------------------------------------------------------- the TaskInfo
def test_an_http_check_probes_the_port_assigned_at_its_port_index() -> None:
    check = dict(delay=1.5, interval=2.0, timeout=1.0, grace_period=10.0, consecutive_failures=4)
    info = info_of(served(1, **check))
    hc = info.health_check
    env = {v.name: v.value for v in info.command.environment.variables}
    assert env["AIOMESOS_PORT1"] == "31001" and hc.http.port == 31001  # the same numbering as AIOMESOS_PORTi
    assert (hc.type, hc.http.scheme, hc.http.path) == (tpb.HealthCheck.HTTP, "http", "/health")
    # every setting given: the agent's defaults (delay 15s, interval 10s, ...) never apply; the agent reads it so
    policy = HealthPolicy.from_proto(hc)
    assert policy.validate() == []
    assert (policy.port, policy.path, policy.delay, policy.interval, policy.timeout) == (31001, "/health", 1.5, 2, 1)
    assert (policy.grace_period, policy.consecutive_failures) == (10.0, 4)
    assert info_of(served(0)).health_check.http.port == 31000


def test_a_tcp_check_and_a_command_check() -> None:
    tcp = Launch("t", resources=TaskResources(cpus=1, mem=10, ports=3), health_check=HealthCheckSpec("tcp", 2))
    hc = info_of(tcp).health_check
    assert (hc.type, hc.tcp.port, hc.HasField("http")) == (tpb.HealthCheck.TCP, 31005, False)
    assert HealthPolicy.from_proto(hc).port == 31005
    cmd = Launch(
        "c",
        user="alice",
        env=(("X", "1"),),
        resources=TaskResources(cpus=1, mem=10, ports=1),
        health_check=HealthCheckSpec("command", command='test -n "$AIOMESOS_PORT0"'),
    )
    hc = info_of(cmd, ports=(31000,)).health_check
    assert (hc.type, hc.command.shell, hc.command.value, hc.command.user) == (
        tpb.HealthCheck.COMMAND,
        True,
        'test -n "$AIOMESOS_PORT0"',
        "alice",
    )
    env = {v.name: v.value for v in hc.command.environment.variables}
    assert env == {"X": "1", "AIOMESOS_PORT0": "31000", "PORT0": "31000"}  # the task's environment
    policy = HealthPolicy.from_proto(hc)
    assert policy.validate() == [] and policy.shell and dict(policy.command_env)["AIOMESOS_PORT0"] == "31000"


def test_no_check_no_label_for_batch_and_the_version_label_for_a_version() -> None:
    batch = info_of(Launch("b"), ports=())
    assert not batch.HasField("health_check") and list(batch.labels.labels) == []
    labels = info_of(Launch("v", version=3), ports=()).labels.labels
    assert [(label.key, label.value) for label in labels] == [(VERSION_LABEL, "3")]
    assert VERSION_LABEL == "aiomesos.version"


def test_a_check_on_a_port_the_task_was_not_given_is_not_launched() -> None:
    with pytest.raises(ValueError, match="port_index 3: the task was given 3 ports"):
        info_of(served(3))


async def test_such_a_launch_ends_task_error_naming_the_port() -> None:
    w = await world()
    bad = Launch("bad", resources=TaskResources(cpus=1, mem=10), health_check=HealthCheckSpec("tcp", 0))
    w.js.submit([bad])
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", cpus=2, mem=100, ports=(31000, 31009))])
    w.run()
    assert w.updates == [("bad", tpb.TASK_ERROR)]
    assert w.js.ports("bad") == () and w.js.lifecycle_of == {}


# ---------------------------------------------------------------------- ports
async def test_ports_are_kept_while_the_task_is_tracked() -> None:
    w = await world()
    seen: list[tuple[str, int, tuple[int, ...]]] = []
    w.js.on_update = lambda launch, st: seen.append((launch.task_id, st.state, w.js.ports(launch.task_id)))
    w.js.submit([Launch("s", resources=TaskResources(cpus=1, mem=10, ports=2))])
    assert w.js.ports("s") == ()  # queued
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", cpus=2, mem=100, ports=(31000, 31009))])
    w.run()
    ports = w.js.ports("s")
    info = w.fake.infos["s"]
    env = {v.name: v.value for v in info.command.environment.variables}
    assert len(ports) == 2 and ports == tuple(sorted(ports))
    assert (env["AIOMESOS_PORT0"], env["AIOMESOS_PORT1"]) == (str(ports[0]), str(ports[1]))
    await w.status("s", tpb.TASK_RUNNING, "a1")
    await w.status("s", tpb.TASK_FAILED, "a1")
    assert seen == [("s", tpb.TASK_RUNNING, ports), ("s", tpb.TASK_FAILED, ports)]  # the end still tells them
    assert w.js.ports("s") == () and w.js.schedulers["*"].ports == {}
    w.js.adopt(Launch("old"), "a1")
    assert w.js.ports("old") == () and w.js.ports("nobody") == ()


# ---------------------------------------------------------------------- lifecycles
def test_only_a_launch_with_a_lifecycle_gets_the_lifecycle_constraint() -> None:
    of = {"g": "perpetual"}
    assert task_request(Launch("b", group="g"), lifecycle_of=of).soft_constraints == ()  # batch: nothing more
    assert task_request(Launch("p", group="g", lifecycle="perpetual")).soft_constraints == ()  # no map: none
    (c,) = task_request(Launch("p", group="g", lifecycle="perpetual"), lifecycle_of=of).soft_constraints
    assert isinstance(c, LifecycleAffinity) and c.lifecycle == "perpetual" and c.lifecycle_of is of


async def test_lifecycle_of_follows_the_groups_tracked() -> None:
    w = await world()
    w.js.submit([Launch("b0", group="batch"), Launch("b1", group="batch"), Launch("n")])
    w.js.submit([Launch("p0", group="stream.r.gen", lifecycle="perpetual")])
    w.js.adopt(Launch("t0", group="etl.r.read", lifecycle="transient"), "a1")
    assert w.js.lifecycle_of == {"batch": "transient", "stream.r.gen": "perpetual", "etl.r.read": "transient"}
    assert [type(c) for c in w.js.schedulers["*"].tasks["p0"].soft_constraints] == [LifecycleAffinity]
    assert w.js.schedulers["*"].tasks["b0"].soft_constraints == ()
    w.js.kill("b0")
    assert "batch" in w.js.lifecycle_of  # b1 is still tracked
    w.js.kill("b1")
    await w.status("t0", tpb.TASK_FINISHED, "a1")
    assert w.js.lifecycle_of == {"stream.r.gen": "perpetual"}


def stream(name: str, lifecycle: str, n: int, role: str = "*", cpus: float = 0.5) -> list[Launch]:
    group = f"{name}.r.main"
    res = TaskResources(cpus=cpus, mem=10, ports=1)
    return [Launch(f"{group}.{i}.0", role=role, resources=res, group=group, lifecycle=lifecycle) for i in range(n)]


def four_offers(prefix: str, role: str = "*", cpus: float = 2) -> list:
    return [
        role_offer(f"{prefix}{i}", f"a{i}", f"h{i}", role, cpus=cpus, mem=100, ports=(31000, 31009)) for i in range(4)
    ]


async def test_perpetual_and_transient_land_on_disjoint_agents_and_share_when_they_must() -> None:
    w = await world()
    perpetual, transient = stream("p", "perpetual", 3), stream("t", "transient", 3)
    w.js.submit(perpetual + transient)
    await w.js.offers(w.d, four_offers("o"))
    w.run()
    where = dict(w.js.schedulers["*"].launched())
    p = {where[x.task_id] for x in perpetual}
    t = {where[x.task_id] for x in transient}
    assert p and t and not p & t, where


async def test_with_no_room_apart_they_share_and_nothing_is_refused() -> None:
    w = await world()
    perpetual, transient = stream("p", "perpetual", 1), stream("t", "transient", 3)
    w.js.submit(perpetual + transient)
    await w.js.offers(w.d, four_offers("o", cpus=1)[:2])  # two agents of 1 cpu: room for 4 tasks of 0.5
    w.run()
    where = dict(w.js.schedulers["*"].launched())
    assert len(where) == 4 and w.js.waiting_reasons() == {}
    p = where[perpetual[0].task_id]
    (other,) = {"a0", "a1"} - {p}
    assert sorted(where[x.task_id] for x in transient) == sorted([other, other, p])  # two apart, one shares


async def test_another_roles_tasks_count_for_the_lifecycle() -> None:
    w = await world()
    perpetual = stream("p", "perpetual", 1, role="svc")
    w.js.submit(perpetual)
    await w.js.offers(w.d, [role_offer("o0", "a0", "h0", "svc", cpus=4, mem=100, ports=(31000, 31009))])
    w.run("svc")
    await w.status(perpetual[0].task_id, tpb.TASK_RUNNING, "a0")
    transient = stream("t", "transient", 1)
    w.js.submit(transient)
    # h0 has more room left (bin packing would pick it: it is the fuller one), h1 is empty
    await w.js.offers(
        w.d,
        [
            role_offer("x0", "a0", "h0", cpus=0.6, mem=100, ports=(31000, 31009)),
            role_offer("x1", "a1", "h1", cpus=4, mem=100, ports=(31000, 31009)),
        ],
    )
    w.run()
    assert dict(w.js.schedulers["*"].launched()) == {transient[0].task_id: "a1"}
    assert w.js.schedulers["*"].outside == {"a0": frozenset({"perpetual"})}


# ---------------------------------------------------------------------- draining
async def test_a_draining_agent_is_told_once_until_offered_again() -> None:
    told: list[str] = []
    w = await world(on_draining=told.append)
    w.js.submit([Launch("a")])
    await w.js.agent_draining(w.d, "a1", None)
    await w.js.agent_draining(w.d, "a1", None)  # told again on a resubscription
    assert told == ["a1"]
    await w.js.offers(w.d, [role_offer("o1", "a1", "h1", cpus=2, mem=100)])  # drain over
    await w.js.agent_draining(w.d, "a1", 30.0)
    await w.js.agent_lost(w.d, "a1")
    await w.js.agent_draining(w.d, "a1", None)
    assert told == ["a1", "a1", "a1"]
    w2 = await world()  # without a callback: nothing to tell
    await w2.js.agent_draining(w2.d, "a1", None)
