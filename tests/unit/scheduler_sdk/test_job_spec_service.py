"""Service and stream job specs (scheduler_sdk.frameworks.jobs.spec, spec_service): the YAML of issue 12 parses to
the expected JobSpec, defaults included; every out-of-range setting and every field of another type is one
SpecError naming the file, the line and the field path; spec_diff tells a scale from a rollout; check_fits names a
stream's stage."""

from __future__ import annotations

import textwrap
from dataclasses import replace

import pytest

from scheduler_sdk.frameworks.jobs.spec import (
    ConstraintSpec,
    HealthCheckSpec,
    JobSpec,
    RestartPolicy,
    SpecError,
    StepSpec,
    TaskResources,
    UpdatePolicy,
    check_fits,
    parse_spec,
    spec_diff,
)

SERVICE = """\
name: web
type: service
role: web
instances: 3
command: "python3 -m http.server $PORT0"
resources: {cpus: 0.1, mem: 64, ports: 1}
constraints: [{unique: hostname}]
env: {MODE: prod}
user: www
health_check: {type: http, path: /, port_index: 0, delay: 0s, interval: 2s, timeout: 1s, grace_period: 10s,
               consecutive_failures: 3}
restart: {backoff: 1s, max_backoff: 1m, reset_after: 1m, crash_loop: 3}
update: {max_parallel: 1, min_healthy_time: 10s, healthy_deadline: 5m, canary: 1, auto_revert: true}
labels: {team: web}
"""

STREAM = """\
name: wordcount
type: stream
lifecycle: transient
restart: {backoff: 2s}
update: {max_parallel: 2}
stages:
  - name: gen
    workers: 2
    command: "python3 gen.py"
    resources: {cpus: 0.2, mem: 32}
  - name: count
    command: "python3 count.py"
    resources: {ports: 2}
    health_check: {type: tcp, port_index: 1}
    constraints: [{balanced: zone}]
    env: {WINDOW: 10}
"""


def spec_error(text: str, filename: str = "f.yaml") -> SpecError:
    with pytest.raises(SpecError) as e:
        parse_spec(textwrap.dedent(text), filename)
    assert "\n" not in str(e.value)
    return e.value


# ------------------------------------------------------------------------------------------ good specs
def test_the_contract_service_parses_to_the_expected_spec() -> None:
    spec = parse_spec(SERVICE, "web.yaml")
    step = StepSpec(
        name="web",
        command="python3 -m http.server $PORT0",
        count=3,
        resources=TaskResources(cpus=0.1, mem=64.0, ports=1),
        constraints=(ConstraintSpec("unique", attribute="hostname"),),
        env=(("MODE", "prod"),),
        user="www",
        line=1,
        health_check=HealthCheckSpec(
            type="http", port_index=0, path="/", delay=0.0, interval=2.0, timeout=1.0, grace_period=10.0
        ),
    )
    assert spec == JobSpec(
        name="web",
        type="service",
        steps=(step,),
        role="web",
        labels=(("team", "web"),),
        source=SERVICE,
        filename="web.yaml",
        restart=RestartPolicy(backoff=1.0, max_backoff=60.0, reset_after=60.0, crash_loop=3),
        update=UpdatePolicy(max_parallel=1, min_healthy_time=10.0, healthy_deadline=300.0, canary=1, auto_revert=True),
        lifecycle="perpetual",
    )
    assert spec.long_running and spec.step("web") == step


def test_a_minimal_service_has_the_defaults() -> None:
    text = "name: api\ntype: service\ncommand: ./serve\n"
    spec = parse_spec(text)
    assert spec == JobSpec(
        name="api",
        type="service",
        steps=(StepSpec(name="api", command="./serve", count=1, resources=TaskResources(ports=1), line=1),),
        source=text,
        lifecycle="perpetual",
    )
    assert (spec.restart, spec.update) == (RestartPolicy(), UpdatePolicy())
    assert spec.steps[0].health_check is None and spec.steps[0].retries.attempts == 0


def test_service_ports_default_to_1_only_when_not_given() -> None:
    def ports(resources: str) -> int:
        return parse_spec(f"name: a\ntype: service\ncommand: x\n{resources}").steps[0].resources.ports

    assert ports("") == 1
    assert ports("resources: {cpus: 2}\n") == 1
    assert ports("resources: {ports: 0}\n") == 0
    assert ports("resources: {ports: 3}\n") == 3
    assert parse_spec("name: a\ncommand: x\n").steps[0].resources.ports == 0  # a batch job: as before


def test_a_service_scaled_to_nothing_and_the_other_health_checks() -> None:
    spec = parse_spec("name: a\ntype: service\ninstances: 0\ncommand: x\nhealth_check: {type: tcp}\n")
    assert spec.steps[0].count == 0
    assert spec.steps[0].health_check == HealthCheckSpec("tcp")
    text = service('resources: {ports: 0}\nhealth_check: {type: command, command: "test -f ok"}\n')
    check = parse_spec(text).steps[0]
    assert check.health_check == HealthCheckSpec("command", command="test -f ok")
    assert check.resources.ports == 0  # a command check needs no port


def test_the_stream_parses_with_its_stages_in_data_order() -> None:
    spec = parse_spec(STREAM, "wc.yaml")
    gen = StepSpec(
        name="gen", command="python3 gen.py", count=2, resources=TaskResources(cpus=0.2, mem=32.0, ports=1), line=7
    )
    count = StepSpec(
        name="count",
        command="python3 count.py",
        count=1,
        resources=TaskResources(ports=2),
        constraints=(ConstraintSpec("balanced", attribute="zone"),),
        env=(("WINDOW", "10"),),
        line=11,
        health_check=HealthCheckSpec("tcp", port_index=1),
    )
    assert spec == JobSpec(
        name="wordcount",
        type="stream",
        steps=(gen, count),
        source=STREAM,
        filename="wc.yaml",
        restart=RestartPolicy(backoff=2.0, max_backoff=60.0),
        update=UpdatePolicy(max_parallel=2),
        lifecycle="transient",
    )


def test_stream_defaults_and_a_raised_backoff_cap() -> None:
    spec = parse_spec("name: s\ntype: stream\nrestart: {backoff: 5m}\nstages: [{name: a, command: x}]\n")
    assert spec.lifecycle == "perpetual" and spec.update == UpdatePolicy()
    assert spec.restart == RestartPolicy(backoff=300.0, max_backoff=300.0)  # the cap rises to the backoff, as retries
    assert spec.steps == (StepSpec(name="a", command="x", resources=TaskResources(ports=1), line=4),)


# --------------------------------------------------------------------------------------- the error kinds
def service(tail: str = "", head: str = "") -> str:
    return f"name: web\ntype: service\n{head}command: serve\n{tail}"


def stream(stages: str, head: str = "") -> str:
    return f"name: wc\ntype: stream\n{head}stages:\n" + textwrap.indent(textwrap.dedent(stages), "  ")


TWO_STAGES = "- {name: gen, command: gen}\n- {name: count, command: count}\n"
HTTP = "health_check: {type: http, "
BAD_SPECS = [
    # typos get a suggestion, at the top and in a stage
    (service("instance: 3\n"), "", 4, "unknown field 'instance' (did you mean 'instances'?)"),
    (service("helth_check: {type: tcp}\n"), "", 4, "unknown field 'helth_check' (did you mean 'health_check'?)"),
    (
        stream("- {name: a, command: x, worker: 2}\n"),
        "stages[0]",
        4,
        "unknown field 'worker' (did you mean 'workers'?)",
    ),
    (
        service("health_check: {type: tcp, intervall: 2s}\n"),
        "health_check",
        4,
        "unknown field 'intervall' (did you mean 'interval'?)",
    ),
    (service("restart: {backof: 1s}\n"), "restart", 4, "unknown field 'backof' (did you mean 'backoff'?)"),
    (service("update: {max_paralel: 2}\n"), "update", 4, "unknown field 'max_paralel' (did you mean 'max_parallel'?)"),
    # instances and workers
    (service("instances: 1001\n"), "instances", 4, "must be a whole number from 0 to 1000, not 1001"),
    (service("instances: -1\n"), "instances", 4, "must be a whole number from 0 to 1000, not -1"),
    (service("instances: 2.5\n"), "instances", 4, "must be a whole number from 0 to 1000, not 2.5"),
    (service("instances: '3'\n"), "instances", 4, "must be a whole number from 0 to 1000, not '3'"),
    (
        stream("- {name: a, command: x}\n- name: b\n  command: y\n  workers: 1001\n"),
        "stages[1].workers",
        7,
        "must be a whole number from 0 to 1000, not 1001",
    ),
    # fields a service does not have
    (service("count: 3\n"), "count", 4, "a service has instances"),
    (service("retries: {attempts: 1}\n"), "retries", 4, "a service restarts its instances: restart"),
    (service("timeout: 1h\n"), "timeout", 4, "a service runs until stopped: it has no timeout"),
    (service("gang: true\n"), "gang", 4, "a service has no gang: its instances start as each fits"),
    (service("schedule: '@daily'\n"), "schedule", 4, "a service runs until stopped, not on a schedule"),
    (service("overlap: skip\n"), "overlap", 4, "a service runs until stopped, not on a schedule"),
    (service("on_missed: skip\n"), "on_missed", 4, "a service runs until stopped, not on a schedule"),
    (service("on_failure: fail\n"), "on_failure", 4, "only a workflow has on_failure"),
    (service("steps: []\n"), "steps", 4, "a service has no steps: its instances run its command"),
    (service("depends_on: [x]\n"), "depends_on", 4, "only a workflow's steps depend on others (type: workflow)"),
    (service("stages: []\n"), "stages", 4, "only a stream has stages (type: stream)"),
    (service("lifecycle: perpetual\n"), "lifecycle", 4, "services are perpetual"),
    ("name: web\ntype: service\n", "command", 1, "is required"),
    # fields a stream does not have, at the top and in a stage
    (
        stream(TWO_STAGES, head="command: x\n"),
        "command",
        3,
        "put it in a stage: a stream's task fields belong to its stages",
    ),
    (
        stream(TWO_STAGES, head="health_check: {type: tcp}\n"),
        "health_check",
        3,
        "put it in a stage: a stream's task fields belong to its stages",
    ),
    (stream(TWO_STAGES, head="instances: 2\n"), "instances", 3, "put it in a stage: a stream's stages have workers"),
    (stream(TWO_STAGES, head="retries: {attempts: 1}\n"), "retries", 3, "a stream restarts its workers: restart"),
    (stream(TWO_STAGES, head="steps: []\n"), "steps", 3, "a stream has stages, not steps"),
    (stream("- {name: a, command: x, count: 2}\n"), "stages[0].count", 4, "a stage has workers"),
    (
        stream("- {name: a, command: x, retries: {attempts: 1}}\n"),
        "stages[0].retries",
        4,
        "a stream restarts its workers: restart (a field of the stream, beside stages)",
    ),
    (
        stream("- {name: a, command: x, timeout: 1m}\n"),
        "stages[0].timeout",
        4,
        "a stream runs until stopped: it has no timeout",
    ),
    (
        stream("- {name: a, command: x}\n- {name: b, command: y, depends_on: [a]}\n"),
        "stages[1].depends_on",
        5,
        "a stream's stages run in data order: stage k reads from stage k-1",
    ),
    # the stages themselves
    ("name: wc\ntype: stream\n", "stages", 1, "is required"),
    ("name: wc\ntype: stream\nstages: []\n", "stages", 3, "must list at least one stage"),
    ("name: wc\ntype: stream\nstages: {a: 1}\n", "stages", 3, "must be a list of stages, not a mapping"),
    (
        "name: wc\ntype: stream\nstages: [" + ", ".join(f"{{name: s{i}, command: x}}" for i in range(21)) + "]\n",
        "stages",
        3,
        "must list at most 20 stages, not 21",
    ),
    (stream("- gen\n"), "stages[0]", 4, "must be a stage: a mapping of fields (name: ..., command: ...), not 'gen'"),
    (stream("- {command: x}\n"), "stages[0].name", 4, "is required"),
    (stream("- {name: a}\n"), "stages[0].command", 4, "is required"),
    (
        stream("- {name: Gen, command: x}\n"),
        "stages[0].name",
        4,
        "'Gen' is not a name: lowercase letters, digits "
        "and '-', starting with a letter or a digit, at most 63 characters",
    ),
    (
        stream("- {name: a, command: x}\n- {name: a, command: y}\n"),
        "stages[1].name",
        5,
        "'a' is already the name of stages[0]",
    ),
    (
        stream("- {name: a, command: x, resources: {cpus: 0}}\n"),
        "stages[0].resources.cpus",
        4,
        "must be a number > 0, not 0",
    ),
    (
        stream(TWO_STAGES, head="lifecycle: perpetal\n"),
        "lifecycle",
        3,
        "must be one of perpetual, transient, not 'perpetal' (did you mean 'perpetual'?)",
    ),
    # the new fields in a batch job or a workflow
    ("name: x\ncommand: ls\ninstances: 3\n", "instances", 3, "only a service has instances (type: service)"),
    (
        "name: x\ncommand: ls\nhealth_check: {type: tcp}\n",
        "health_check",
        3,
        "only services and streams have a health check (type: service)",
    ),
    (
        "name: x\ncommand: ls\nrestart: {}\n",
        "restart",
        3,
        "only services and streams have restart (a batch job has retries)",
    ),
    ("name: x\ncommand: ls\nupdate: {}\n", "update", 3, "only services and streams have update"),
    ("name: x\ncommand: ls\nlifecycle: transient\n", "lifecycle", 3, "only a stream has a lifecycle (type: stream)"),
    ("name: x\ntype: workflow\nstages: []\nsteps: []\n", "stages", 3, "only a stream has stages (type: stream)"),
    (
        "name: x\ncommand: ls\nenv: {AIOMESOS_UPSTREAM: a}\n",
        "env",
        3,
        "'AIOMESOS_UPSTREAM' is set by the jobs service in every task",
    ),
    (service("env: {AIOMESOS_VERSION: 2}\n"), "env", 4, "'AIOMESOS_VERSION' is set by the jobs service in every task"),
    # health checks
    (
        service("health_check: http\n"),
        "health_check",
        4,
        "must be a mapping like {type: http, path: /health}, not 'http'",
    ),
    (service("health_check: {path: /}\n"), "health_check.type", 4, "is required"),
    (service("health_check: {type: grpc}\n"), "health_check.type", 4, "must be one of http, tcp, command, not 'grpc'"),
    (
        service("health_check: {type: htp}\n"),
        "health_check.type",
        4,
        "must be one of http, tcp, command, not 'htp' (did you mean 'http'?)",
    ),
    (service("health_check: {type: tcp, path: /}\n"), "health_check.path", 4, "path is for http checks"),
    (service("health_check: {type: http, command: ls}\n"), "health_check.command", 4, "command is for command checks"),
    (
        service("health_check: {type: command, command: ls, port_index: 0}\n"),
        "health_check.port_index",
        4,
        "port_index is for http and tcp checks",
    ),
    (service("health_check: {type: command}\n"), "health_check.command", 4, "is required"),
    (service("health_check: {type: command, command: ' '}\n"), "health_check.command", 4, "must not be empty"),
    (
        service("health_check: {type: command, command: 7}\n"),
        "health_check.command",
        4,
        "must be a shell command line (text), not 7 (quote it to make it text)",
    ),
    (
        service(HTTP + "path: health}\n"),
        "health_check.path",
        4,
        "must be a URL path: starting with '/', no spaces, not 'health'",
    ),
    (
        service(HTTP + "path: '/a b'}\n"),
        "health_check.path",
        4,
        "must be a URL path: starting with '/', no spaces, not '/a b'",
    ),
    (
        service(HTTP + "port_index: 1}\n"),
        "health_check.port_index",
        4,
        "the task has 1 port (resources.ports), so port_index must be 0",
    ),
    (
        service("resources: {ports: 3}\nhealth_check:\n  type: tcp\n  port_index: 3\n"),
        "health_check.port_index",
        7,
        "the task has 3 ports (resources.ports), so port_index must be from 0 to 2",
    ),
    (service(HTTP + "port_index: -1}\n"), "health_check.port_index", 4, "must be a whole number >= 0, not -1"),
    (
        service("resources: {ports: 0}\nhealth_check: {type: http}\n"),
        "health_check.type",
        5,
        "the task has no ports (resources.ports: 0), so its http check has no port to probe",
    ),
    (
        stream("- name: a\n  command: x\n  health_check: {type: tcp, port_index: 1}\n"),
        "stages[0].health_check.port_index",
        6,
        "the task has 1 port (resources.ports), so port_index must be 0",
    ),
    (service(HTTP + "interval: 0s}\n"), "health_check.interval", 4, "must be a duration from 100ms to 1h, not '0s'"),
    (
        service(HTTP + "interval: 50ms}\n"),
        "health_check.interval",
        4,
        "must be a duration from 100ms to 1h, not '50ms'",
    ),
    (service(HTTP + "timeout: 2h}\n"), "health_check.timeout", 4, "must be a duration from 100ms to 1h, not '2h'"),
    (service(HTTP + "delay: 61m}\n"), "health_check.delay", 4, "must be a duration of at most 1h, not '61m'"),
    (
        service(HTTP + "grace_period: -1}\n"),
        "health_check.grace_period",
        4,
        "must be a duration (e.g. 5s, 10m, 1h30m), not -1",
    ),
    (
        service(HTTP + "grace_period: soon}\n"),
        "health_check.grace_period",
        4,
        "'soon' is not a duration (e.g. 90s, 500ms, 10m, 1h30m, 2d)",
    ),
    (
        service(HTTP + "consecutive_failures: 0}\n"),
        "health_check.consecutive_failures",
        4,
        "must be a whole number from 1 to 100, not 0",
    ),
    (
        service(HTTP + "consecutive_failures: 101}\n"),
        "health_check.consecutive_failures",
        4,
        "must be a whole number from 1 to 100, not 101",
    ),
    (
        stream("- {name: a, command: x}\n- name: b\n  command: y\n  health_check:\n    type: tcp\n    interval: 0\n"),
        "stages[1].health_check.interval",
        9,
        "must be a duration from 100ms to 1h, not 0",
    ),
    # restart
    (service("restart: 1s\n"), "restart", 4, "must be a mapping like {backoff: 1s, max_backoff: 1m}, not '1s'"),
    (service("restart: {backoff: 2h}\n"), "restart.backoff", 4, "must be a duration of at most 1h, not '2h'"),
    (
        service("restart: {backoff: 10s, max_backoff: 5s}\n"),
        "restart.max_backoff",
        4,
        "must be at least the backoff (10s), not '5s'",
    ),
    (service("restart: {max_backoff: 25h}\n"), "restart.max_backoff", 4, "must be a duration of at most 1d, not '25h'"),
    (
        service("restart: {reset_after: 0.5s}\n"),
        "restart.reset_after",
        4,
        "must be a duration from 1s to 1d, not '0.5s'",
    ),
    (service("restart: {crash_loop: 0}\n"), "restart.crash_loop", 4, "must be a whole number from 1 to 1000, not 0"),
    (
        stream(TWO_STAGES, head="restart:\n  crash_loop: 1001\n"),
        "restart.crash_loop",
        4,
        "must be a whole number from 1 to 1000, not 1001",
    ),
    # update
    (
        service("update: [1]\n"),
        "update",
        4,
        "must be a mapping like {max_parallel: 1, min_healthy_time: 10s}, not a list",
    ),
    (service("update: {max_parallel: 0}\n"), "update.max_parallel", 4, "must be a whole number from 1 to 1000, not 0"),
    (
        stream(TWO_STAGES, head="update: {max_parallel: 1001}\n"),
        "update.max_parallel",
        3,
        "must be a whole number from 1 to 1000, not 1001",
    ),
    (
        service("update: {min_healthy_time: 2h}\n"),
        "update.min_healthy_time",
        4,
        "must be a duration of at most 1h, not '2h'",
    ),
    (
        service("update: {min_healthy_time: 10m}\n"),
        "update.min_healthy_time",
        4,
        "must be shorter than healthy_deadline (5m, its default): set a longer one",
    ),
    (
        service("update: {min_healthy_time: 1m, healthy_deadline: 1m}\n"),
        "update.healthy_deadline",
        4,
        "must be longer than min_healthy_time (1m), not '1m'",
    ),
    (
        service("update: {healthy_deadline: 2d}\n"),
        "update.healthy_deadline",
        4,
        "must be a duration of at most 1d, not '2d'",
    ),
    (
        service("update: {canary: 4}\n", head="instances: 3\n"),
        "update.canary",
        5,
        "must be a whole number from 0 to 3 (instances), not 4",
    ),
    (
        service("update: {canary: 1}\n", head="instances: 0\n"),
        "update.canary",
        5,
        "must be a whole number from 0 to 0 (instances), not 1",
    ),
    (
        stream(TWO_STAGES, head="update: {canary: 1}\n"),
        "update.canary",
        3,
        "a stream has no canaries: its update replaces workers max_parallel at a time",
    ),
    (service("update: {auto_revert: 'yes'}\n"), "update.auto_revert", 4, "must be true or false, not 'yes'"),
]


@pytest.mark.parametrize(("text", "field", "line", "message"), BAD_SPECS, ids=[f"{i}" for i in range(len(BAD_SPECS))])
def test_each_bad_spec_names_the_field_and_line(text: str, field: str, line: int, message: str) -> None:
    e = spec_error(text)
    assert (e.field, e.line, e.message) == (field, line, message)
    assert str(e) == (f"f.yaml:{line}: {field}: {message}" if field else f"f.yaml:{line}: {message}")


def test_a_stream_may_say_canary_0_and_a_stage_may_have_no_workers() -> None:
    spec = parse_spec(stream("- {name: a, command: x, workers: 0}\n", head="update: {canary: 0}\n"))
    assert spec.update.canary == 0 and spec.steps[0].count == 0


# ------------------------------------------------------------------------------------------ spec_diff
def test_spec_diff_none_when_only_where_it_was_read_from_differs() -> None:
    old = parse_spec(SERVICE, "a.yaml")
    assert spec_diff(old, old) == "none"
    assert spec_diff(old, parse_spec("# a comment first\n" + SERVICE, "b.yaml")) == "none"  # other source, lines


def test_spec_diff_scale_when_only_counts_differ() -> None:
    old = parse_spec(SERVICE)
    assert spec_diff(old, parse_spec(SERVICE.replace("instances: 3", "instances: 5"))) == "scale"
    assert spec_diff(old, parse_spec(SERVICE.replace("instances: 3", "instances: 1"))) == "scale"
    wc = parse_spec(STREAM)
    assert spec_diff(wc, parse_spec(STREAM.replace("workers: 2", "workers: 4"))) == "scale"
    more = parse_spec(
        STREAM.replace('    command: "python3 count.py"', '    workers: 3\n    command: "python3 count.py"')
    )
    assert spec_diff(wc, more) == "scale"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('instances: 3\ncommand: "python3', 'instances: 4\ncommand: "python3 -u'),  # a count and something else
        ("http.server", "http.server --bind 0.0.0.0"),
        ("interval: 2s", "interval: 3s"),
        ("mem: 64", "mem: 128"),
        ("max_parallel: 1", "max_parallel: 2"),  # a policy: the run changes, so it is a new version
        ("crash_loop: 3", "crash_loop: 4"),
        ("team: web", "team: api"),
        ("role: web", "role: api"),
    ],
)
def test_spec_diff_update_for_anything_else(old: str, new: str) -> None:
    assert old in SERVICE
    assert spec_diff(parse_spec(SERVICE), parse_spec(SERVICE.replace(old, new))) == "update"


def test_spec_diff_of_streams_by_stage_and_of_batch_jobs() -> None:
    wc = parse_spec(STREAM)
    renamed = parse_spec(STREAM.replace("name: count", "name: counter"))
    swapped = replace(wc, steps=wc.steps[::-1])
    assert spec_diff(wc, renamed) == spec_diff(wc, swapped) == "update"  # stages are by name and in data order
    assert spec_diff(wc, replace(wc, lifecycle="perpetual")) == "update"
    batch = parse_spec("name: b\ncommand: x\ncount: 2\n")
    assert spec_diff(batch, parse_spec("name: b\ncommand: x\ncount: 3\n")) == "update"  # a batch job does not scale
    assert spec_diff(batch, parse_spec("name: b\ncount: 2\ncommand: x\n")) == "none"
    service = parse_spec("name: b\ntype: service\ncommand: x\ninstances: 2\n")
    assert spec_diff(service, replace(service, type="stream", lifecycle="perpetual")) == "update"  # the caller refuses


# ------------------------------------------------------------------------------------------ check_fits
AGENTS = [
    {"cpus": 2.0, "mem": 4096.0, "disk": 10000.0, "gpus": 0.0, "ports": 1001.0},
    {"cpus": 4.0, "mem": 2048.0, "disk": 10000.0, "gpus": 0.0, "ports": 1001.0},
]


def test_check_fits_a_stream_names_the_stage() -> None:
    check_fits(parse_spec(STREAM), AGENTS)
    big = parse_spec(STREAM.replace("resources: {ports: 2}", "resources:\n      ports: 2\n      cpus: 8"), "wc.yaml")
    with pytest.raises(SpecError) as e:
        check_fits(big, AGENTS)
    assert str(e.value) == "wc.yaml:13: stages[1].resources: needs cpus 8 per task; the largest agent has 4"
    both = parse_spec(STREAM.replace("resources: {cpus: 0.2, mem: 32}", "resources: {cpus: 3, mem: 4096}"), "wc.yaml")
    with pytest.raises(SpecError) as e:
        check_fits(both, AGENTS)
    assert (e.value.field, e.value.line, e.value.message) == (
        "stages[0].resources",
        10,
        "needs cpus 3, mem 4096, ports 1 per task; no agent has all of that",
    )


def test_check_fits_a_service_counts_its_default_port() -> None:
    spec = parse_spec("name: web\ntype: service\ncommand: x\ninstances: 0\nresources:\n  cpus: 1\n", "w.yaml")
    check_fits(spec, AGENTS)
    with pytest.raises(SpecError) as e:
        check_fits(spec, [{"cpus": 2.0, "mem": 1024.0, "ports": 0.0}])  # the one port (a default) fits nowhere
    assert str(e.value) == "w.yaml:5: resources: needs ports 1 per task; the largest agent has 0"
