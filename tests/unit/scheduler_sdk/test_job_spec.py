"""Job specs (scheduler_sdk.frameworks.jobs.spec): the YAML of the issue parses to the expected JobSpec, and every
kind of bad input is one SpecError naming the file, the exact line and the exact field path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scheduler_sdk.frameworks.jobs.spec import (
    ConstraintSpec,
    JobSpec,
    RetryPolicy,
    SpecError,
    StepSpec,
    TaskResources,
    check_fits,
    load_spec,
    parse_spec,
)

NAME_RULES = "lowercase letters, digits and '-', starting with a letter or a digit, at most 63 characters"
ROLE_RULES = "'/'-separated names of visible ASCII, none empty, '.', '..' or starting with '-' (or *)"
ISSUE_EXAMPLE = """\
name: nightly-train
type: batch            # batch | workflow (service, stream: next issue)
role: ml
count: 20              # a task array: AIOMESOS_TASK_INDEX=0..19 in each task's environment
command: "python train.py --shard $AIOMESOS_TASK_INDEX"
resources: {cpus: 1, mem: 512, disk: 100, gpus: 0, ports: 1}
constraints: [{unique: zone}, {attribute: {rack: r1}, soft: true}]
retries: {attempts: 3, backoff: 5s}     # relaunch failed tasks, with backoff
timeout: 30m                             # kill a task that runs longer (reason says so)
schedule: "0 2 * * *"                    # optional: cron, as Chronos / Nomad periodic; overlap: skip|allow
gang: true                               # optional: all tasks start together or none
"""

WORKFLOW = """\
name: pipeline
type: workflow
role: ml/train
schedule: "@daily"
time_zone: Europe/Berlin
overlap: allow
on_missed: skip
on_failure: continue
labels: {team: search, tier: 1}
steps:
  - name: a
    command: ./fetch.sh
  - name: b
    command: ./clean.sh
    depends_on: [a]
    retries: {attempts: 2, backoff: 1s, max_backoff: 4s}
  - name: c
    command: ./train.sh --shard $AIOMESOS_TASK_INDEX
    count: 4
    gang: true
    resources: {cpus: 2, mem: 2048, gpus: 1}
    constraints:
      - {hostname: [gpu1, gpu2]}
      - {balanced: zone, soft: true}
    env: {EPOCHS: 10, MODE: fast}
    user: ml
  - name: d
    command: ./publish.sh
    depends_on: [b, c]
    timeout: 1h30m
"""


def spec_error(text: str, filename: str = "f.yaml") -> SpecError:
    with pytest.raises(SpecError) as e:
        parse_spec(textwrap.dedent(text), filename)
    assert "\n" not in str(e.value)
    return e.value


def where(e: SpecError) -> tuple[str, int | None, str]:
    return e.field, e.line, e.message


# ------------------------------------------------------------------------------------------ good specs
def test_the_issue_example_parses_to_the_expected_spec() -> None:
    spec = parse_spec(ISSUE_EXAMPLE, "train.yaml")
    step = StepSpec(
        name="nightly-train",
        command="python train.py --shard $AIOMESOS_TASK_INDEX",
        count=20,
        resources=TaskResources(cpus=1.0, mem=512.0, disk=100.0, gpus=0.0, ports=1),
        constraints=(
            ConstraintSpec("unique", attribute="zone"),
            ConstraintSpec("attribute", attribute="rack", values=("r1",), soft=True),
        ),
        retries=RetryPolicy(attempts=3, backoff=5.0, max_backoff=300.0),
        timeout=1800.0,
        gang=True,
        line=1,
    )
    assert spec == JobSpec(
        name="nightly-train",
        type="batch",
        steps=(step,),
        role="ml",
        schedule="0 2 * * *",
        source=ISSUE_EXAMPLE,
        filename="train.yaml",
    )
    assert spec.step("nightly-train") is spec.steps[0]
    assert all(isinstance(v, float) for v in (step.resources.cpus, step.resources.mem, step.resources.gpus))


def test_a_workflow_parses_with_its_steps_and_dependencies() -> None:
    spec = parse_spec(WORKFLOW, "wf.yaml")
    assert (spec.name, spec.type, spec.role, spec.schedule, spec.time_zone) == (
        "pipeline",
        "workflow",
        "ml/train",
        "@daily",
        "Europe/Berlin",
    )
    assert (spec.overlap, spec.on_missed, spec.on_failure) == ("allow", "skip", "continue")
    assert spec.labels == (("team", "search"), ("tier", "1"))
    assert [s.name for s in spec.steps] == ["a", "b", "c", "d"]
    assert [s.depends_on for s in spec.steps] == [(), ("a",), (), ("b", "c")]
    assert [s.line for s in spec.steps] == [11, 13, 17, 27]
    a, b, c, d = spec.steps
    assert a == StepSpec(name="a", command="./fetch.sh", line=11)
    assert b.retries == RetryPolicy(attempts=2, backoff=1.0, max_backoff=4.0)
    assert (c.count, c.gang, c.user) == (4, True, "ml")
    assert c.resources == TaskResources(cpus=2.0, mem=2048.0, disk=0.0, gpus=1.0, ports=0)
    assert c.constraints == (
        ConstraintSpec("hostname", attribute="hostname", values=("gpu1", "gpu2")),
        ConstraintSpec("balanced", attribute="zone", soft=True),
    )
    assert c.env == (("EPOCHS", "10"), ("MODE", "fast"))
    assert d.timeout == 5400.0
    assert spec.source == WORKFLOW and spec.filename == "wf.yaml"


def test_defaults_of_a_minimal_batch_job() -> None:
    spec = parse_spec("name: hello\ncommand: echo hi\n")
    assert spec == JobSpec(
        name="hello",
        type="batch",
        steps=(StepSpec(name="hello", command="echo hi", line=1),),
        source="name: hello\ncommand: echo hi\n",
    )
    assert spec.role == "*" and spec.time_zone == "UTC" and spec.schedule is None
    assert spec.steps[0].resources == TaskResources(cpus=0.1, mem=64.0)


def test_values_as_written() -> None:
    spec = parse_spec(
        textwrap.dedent(
            """\
            name: "2024"
            command: run
            timeout: 90
            retries: {attempts: 1, backoff: 10m}
            env: {MODE: "0755", OCTAL: 0755, RATIO: 1.50, EMPTY: ""}
            constraints: [{attribute: {rack: 7}}, {hostname: a.local}, {unique: hostname}]
            """
        )
    )
    step = spec.steps[0]
    assert spec.name == "2024" and step.timeout == 90.0
    assert step.env == (("EMPTY", ""), ("MODE", "0755"), ("OCTAL", "0755"), ("RATIO", "1.50"))  # numbers: as written
    assert step.retries == RetryPolicy(attempts=1, backoff=600.0, max_backoff=600.0)  # the cap rises to the backoff
    assert step.constraints == (
        ConstraintSpec("attribute", attribute="rack", values=("7",)),
        ConstraintSpec("hostname", attribute="hostname", values=("a.local",)),
        ConstraintSpec("unique", attribute="hostname"),
    )


def test_merge_keys_share_fields_between_steps() -> None:
    spec = parse_spec(
        textwrap.dedent(
            """\
            name: wf
            type: workflow
            steps:
              - &base {name: a, command: run, resources: {cpus: 2}}
              - {<<: *base, name: b, depends_on: [a]}
            """
        )
    )
    assert [(s.name, s.resources.cpus, s.depends_on) for s in spec.steps] == [("a", 2.0, ()), ("b", 2.0, ("a",))]


def test_load_spec_reads_a_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(ISSUE_EXAMPLE)
    spec = load_spec(path)
    assert spec.filename == str(path) and spec.source == ISSUE_EXAMPLE
    path.write_text("name: x\ncommand: ls\ncount: 0\n")
    with pytest.raises(SpecError) as e:
        load_spec(str(path))
    assert str(e.value) == f"{path}:3: count: must be a whole number from 1 to 10000, not 0"


def test_load_spec_of_a_file_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as e:
        load_spec(tmp_path / "missing.yaml")
    assert str(e.value) == f"{tmp_path / 'missing.yaml'}: cannot read it: No such file or directory"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecError, match=r"binary\.yaml: not UTF-8 text"):
        load_spec(binary)


def test_spec_error_text() -> None:
    e = SpecError("must be a number > 0, not 'x'", field="resources.cpus", line=3, filename="f.yaml")
    assert str(e) == "f.yaml:3: resources.cpus: must be a number > 0, not 'x'"
    assert str(SpecError("empty", filename="")) == "<spec>: empty"


# ---------------------------------------------------------------------------------------- not YAML at all
@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("name: x\ncommand: [ls\n", 3, "not valid YAML: while parsing a flow sequence, expected ',' or ']', but got"),
        ("name: x\n\tcommand: ls\n", 2, "not valid YAML: while scanning for the next token, found character '\\t'"),
        ("name: x\n---\nname: y\n", 2, "not valid YAML: expected a single document in the stream, but found another"),
        ("name: x\ncommand: 'ls\x00'\n", 2, "not valid YAML: character #x0000 is not allowed"),
        ("name: x\n  command: ls\n", 2, "not valid YAML: mapping values are not allowed here"),
        ("a: *nothing\n", 1, "not valid YAML: found undefined alias 'nothing'"),
    ],
)
def test_yaml_syntax_errors_are_one_line_with_their_line(text: str, line: int, message: str) -> None:
    e = spec_error(text)
    assert (e.field, e.line) == ("", line)
    assert e.message.startswith(message)
    assert str(e).startswith(f"f.yaml:{line}: not valid YAML: ")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", None, "empty spec: a job spec is a mapping of fields (name: ..., command: ...)"),
        ("# nothing\n", None, "empty spec: a job spec is a mapping of fields (name: ..., command: ...)"),
        ("- name: x\n", 1, "a job spec is a mapping of fields (name: ..., command: ...), not a list"),
        ("hello\n", 1, "a job spec is a mapping of fields (name: ..., command: ...), not 'hello'"),
    ],
)
def test_not_a_mapping(text: str, line: int | None, message: str) -> None:
    assert where(spec_error(text)) == ("", line, message)


# --------------------------------------------------------------------------------------- the error kinds
BAD_SPECS = [
    # unknown fields, with a suggestion where one is close
    ("name: x\ncomand: ls\n", "", 2, "unknown field 'comand' (did you mean 'command'?)"),
    ("name: x\ncommand: ls\nzzz: 1\n", "", 3, "unknown field 'zzz'"),
    (
        "name: x\ncommand: ls\nresources:\n  cpus: 1\n  memory: 5\n",
        "resources",
        5,
        "unknown field 'memory' (did you mean 'mem'?)",
    ),
    (
        "name: x\ncommand: ls\nretries: {attempt: 1}\n",
        "retries",
        3,
        "unknown field 'attempt' (did you mean 'attempts'?)",
    ),
    ("name: x\ncommand: ls\nname: y\n", "name", 3, "given twice"),
    ("name: x\ncommand: ls\n1: y\n", "", 3, "unknown field '1'"),
    ("name: x\ncommand: ls\n[a]: y\n", "", 3, "a field name must be text, not a list"),
    # required fields, at the line where their mapping starts
    ("command: ls\n", "name", 1, "is required"),
    ("\n\nname: x\ncount: 2\n", "command", 3, "is required"),
    # wrong types: a boolean is not a number, a number is not text
    ("name: x\ncommand: ls\nresources: {cpus: x}\n", "resources.cpus", 3, "must be a number > 0, not 'x'"),
    ("name: x\ncommand: ls\nresources: {cpus: true}\n", "resources.cpus", 3, "must be a number > 0, not true"),
    ("name: x\ncommand: ls\nresources: {mem: '512'}\n", "resources.mem", 3, "must be a number of MB > 0, not '512'"),
    (
        "name: x\ncommand: 123\n",
        "command",
        2,
        "must be a shell command line (text), not 123 (quote it to make it text)",
    ),
    ("name: x\ncommand:\n", "command", 2, "must be a shell command line (text), not null"),
    ("name: x\ncommand: [ls, -l]\n", "command", 2, "must be a shell command line (text), not a list"),
    ("name: x\ncommand: '  '\n", "command", 2, "must not be empty"),
    ("name: x\ncommand: ls\ncount: '3'\n", "count", 3, "must be a whole number from 1 to 10000, not '3'"),
    ("name: x\ncommand: ls\ncount: 2.5\n", "count", 3, "must be a whole number from 1 to 10000, not 2.5"),
    ("name: x\ncommand: ls\ngang: 1\n", "gang", 3, "must be true or false, not 1 (quote it to make it text)"),
    ("name: x\ncommand: ls\nresources: 1\n", "resources", 3, "must be a mapping like {cpus: 1, mem: 512}, not 1"),
    ("name: x\ncommand: ls\nretries: 3\n", "retries", 3, "must be a mapping like {attempts: 3, backoff: 5s}, not 3"),
    ("name: x\ncommand: ls\nuser: 0\n", "user", 3, "must be a user name, not 0 (quote it to make it text)"),
    ("name: x\ncommand: ls\nuser: ' root'\n", "user", 3, "' root' is not a user name"),
    ("name: x\ncommand: ls\nrole: 7\n", "role", 3, "must be a role, not 7 (quote it to make it text)"),
    # out of range
    ("name: x\ncommand: ls\nresources: {cpus: 0}\n", "resources.cpus", 3, "must be a number > 0, not 0"),
    ("name: x\ncommand: ls\nresources: {cpus: .nan}\n", "resources.cpus", 3, "must be a number > 0, not .nan"),
    ("name: x\ncommand: ls\nresources: {mem: -1}\n", "resources.mem", 3, "must be a number of MB > 0, not -1"),
    ("name: x\ncommand: ls\nresources: {disk: -1}\n", "resources.disk", 3, "must be a number of MB >= 0, not -1"),
    ("name: x\ncommand: ls\nresources: {gpus: 0.5}\n", "resources.gpus", 3, "must be a whole number >= 0, not 0.5"),
    (
        "name: x\ncommand: ls\nresources: {ports: 101}\n",
        "resources.ports",
        3,
        "must be a whole number from 0 to 100, not 101",
    ),
    ("name: x\ncommand: ls\ncount: 0\n", "count", 3, "must be a whole number from 1 to 10000, not 0"),
    ("name: x\ncommand: ls\ncount: 10001\n", "count", 3, "must be a whole number from 1 to 10000, not 10001"),
    (
        "name: x\ncommand: ls\nretries: {attempts: 101}\n",
        "retries.attempts",
        3,
        "must be a whole number from 0 to 100, not 101",
    ),
    (
        "name: x\ncommand: ls\nretries: {attempts: -1}\n",
        "retries.attempts",
        3,
        "must be a whole number from 0 to 100, not -1",
    ),
    # durations
    ("name: x\ncommand: ls\ntimeout: 0s\n", "timeout", 3, "must be a duration > 0, not '0s'"),
    ("name: x\ncommand: ls\ntimeout: 0\n", "timeout", 3, "must be a duration > 0, not 0"),
    (
        "name: x\ncommand: ls\ntimeout: soon\n",
        "timeout",
        3,
        "'soon' is not a duration (e.g. 90s, 500ms, 10m, 1h30m, 2d)",
    ),
    (
        "name: x\ncommand: ls\ntimeout: true\n",
        "timeout",
        3,
        "must be a duration > 0 (e.g. 5s, 10m, 1h30m), not true (quote it to make it text)",
    ),
    (
        "name: x\ncommand: ls\nretries:\n  backoff: -5\n",
        "retries.backoff",
        4,
        "must be a duration (e.g. 5s, 10m, 1h30m), not -5",
    ),
    (
        "name: x\ncommand: ls\nretries: {backoff: 10s, max_backoff: 5s}\n",
        "retries.max_backoff",
        3,
        "must be at least the backoff (10s), not '5s'",
    ),
    # names, types and choices
    (
        "name: Nightly_Train\ncommand: ls\n",
        "name",
        1,
        f"'Nightly_Train' is not a name: {NAME_RULES}",
    ),
    (
        "name: -x\ncommand: ls\n",
        "name",
        1,
        f"'-x' is not a name: {NAME_RULES}",
    ),
    (
        f"name: {'a' * 64}\ncommand: ls\n",
        "name",
        1,
        f"'{'a' * 64}' is not a name: {NAME_RULES}",
    ),
    ("name: 2024\ncommand: ls\n", "name", 1, "must be a name, not 2024 (quote it to make it text)"),
    (
        "name: x\ntype: servce\ncommand: ls\n",
        "type",
        2,
        "must be one of batch, workflow, service, stream, not 'servce' (did you mean 'service'?)",
    ),
    (
        "name: x\ntype: workflw\ncommand: ls\n",
        "type",
        2,
        "must be one of batch, workflow, service, stream, not 'workflw' (did you mean 'workflow'?)",
    ),
    (
        "name: x\ncommand: ls\noverlap: skipp\n",
        "overlap",
        3,
        "must be one of skip, allow, not 'skipp' (did you mean 'skip'?)",
    ),
    (
        "name: x\ncommand: ls\non_missed: yes\n",
        "on_missed",
        3,
        "must be one of run_once, skip, not yes (quote it to make it text)",
    ),
    (
        "name: x\ncommand: ls\nrole: ../ml\n",
        "role",
        3,
        f"'../ml' is not a role: {ROLE_RULES}",
    ),
    (
        "name: x\ncommand: ls\nrole: a b\n",
        "role",
        3,
        f"'a b' is not a role: {ROLE_RULES}",
    ),
    # schedules and zones
    ("name: x\ncommand: ls\nschedule: '61 * * * *'\n", "schedule", 3, "minute field '61': 61 is out of range 0-59"),
    (
        "name: x\ncommand: ls\nschedule: '* * *'\n",
        "schedule",
        3,
        "'* * *': expected 5 fields (minute hour day-of-month month day-of-week), got 3",
    ),
    (
        "name: x\ncommand: ls\nschedule: 5\n",
        "schedule",
        3,
        'must be a cron expression (e.g. "0 2 * * *"), not 5 (quote it to make it text)',
    ),
    (
        "name: x\ncommand: ls\ntime_zone: Europe/Berln\n",
        "time_zone",
        3,
        "unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?) (an IANA name like Europe/Berlin, or UTC)",
    ),
    (
        "name: x\ncommand: ls\ntime_zone: /etc/passwd\n",
        "time_zone",
        3,
        "unknown time zone '/etc/passwd' (an IANA name like Europe/Berlin, or UTC)",
    ),
    # env and labels
    (
        "name: x\ncommand: ls\nenv:\n  GOOD: 1\n  1BAD: 2\n",
        "env",
        5,
        "'1BAD' is not an environment variable name (letters, digits and _, not first a digit)",
    ),
    (
        "name: x\ncommand: ls\nenv: {AIOMESOS_TASK_INDEX: 3}\n",
        "env",
        3,
        "'AIOMESOS_TASK_INDEX' is set by the jobs service in every task",
    ),
    ("name: x\ncommand: ls\nenv: {PORT0: 3}\n", "env", 3, "'PORT0' is set by the jobs service in every task"),
    (
        "name: x\ncommand: ls\nenv: {DEBUG: no}\n",
        "env.DEBUG",
        3,
        "must be text or a number, not no (quote it to make it text)",
    ),
    ("name: x\ncommand: ls\nenv: [A=1]\n", "env", 3, "must be a mapping of names to values, not a list"),
    ("name: x\ncommand: ls\nlabels:\n  team:\n", "labels.team", 4, "must be text or a number, not null"),
    ("name: x\ncommand: ls\nlabels: {a: 1, a: 2}\n", "labels.a", 3, "given twice"),
]


@pytest.mark.parametrize(("text", "field", "line", "message"), BAD_SPECS, ids=[f"{i}" for i in range(len(BAD_SPECS))])
def test_each_bad_spec_names_the_field_and_line(text: str, field: str, line: int, message: str) -> None:
    e = spec_error(text)
    assert where(e) == (field, line, message)
    assert str(e) == (f"f.yaml:{line}: {field}: {message}" if field else f"f.yaml:{line}: {message}")


# ------------------------------------------------------------------------------------------ constraints
KINDS = "the kinds are unique, attribute, hostname, balanced (and soft: true)"
BAD_CONSTRAINTS = [
    ("constraints: {unique: zone}", "constraints", 3, "must be a list of constraints, not a mapping"),
    ("constraints: [zone]", "constraints[0]", 3, "must be a mapping like {unique: zone}, not 'zone'"),
    (
        "constraints:\n  - {unique: zone}\n  - {uniq: zone}",
        "constraints[1]",
        5,
        f"unknown constraint kind 'uniq' (did you mean 'unique'?); {KINDS}",
    ),
    ("constraints: [{near: x}]", "constraints[0]", 3, f"unknown constraint kind 'near'; {KINDS}"),
    ("constraints: [{soft: true}]", "constraints[0]", 3, "needs one of unique, attribute, hostname, balanced"),
    (
        "constraints: [{unique: zone, balanced: rack}]",
        "constraints[0]",
        3,
        "one kind per constraint, not both unique and balanced (write two constraints)",
    ),
    ("constraints: [{unique: zone, unique: rack}]", "constraints[0].unique", 3, "given twice"),
    (
        "constraints: [{unique: 1}]",
        "constraints[0].unique",
        3,
        "must be an attribute name (e.g. zone, or hostname), not 1 (quote it to make it text)",
    ),
    ("constraints: [{balanced: ''}]", "constraints[0].balanced", 3, "an attribute name must not be empty"),
    (
        "constraints:\n  - unique: zone\n  - attribute: rack",
        "constraints[1].attribute",
        5,
        "must be a mapping like {rack: r1}, not 'rack'",
    ),
    (
        "constraints: [{attribute: {rack: r1, zone: z1}}]",
        "constraints[0].attribute",
        3,
        "must name one attribute, not 2 (write one constraint for each)",
    ),
    (
        "constraints: [{attribute: {}}]",
        "constraints[0].attribute",
        3,
        "must name one attribute, not 0 (write one constraint for each)",
    ),
    ("constraints: [{attribute: {rack: []}}]", "constraints[0].attribute.rack", 3, "must list at least one value"),
    (
        "constraints: [{attribute: {rack: [r1, [r2]]}}]",
        "constraints[0].attribute.rack[1]",
        3,
        "must be text or a number, not a list",
    ),
    ("constraints: [{hostname: null}]", "constraints[0].hostname", 3, "must be text or a number, not null"),
    ("constraints: [{unique: zone, soft: 'yes'}]", "constraints[0].soft", 3, "must be true or false, not 'yes'"),
]


@pytest.mark.parametrize(
    ("tail", "field", "line", "message"), BAD_CONSTRAINTS, ids=[f"{i}" for i in range(len(BAD_CONSTRAINTS))]
)
def test_bad_constraint_forms(tail: str, field: str, line: int, message: str) -> None:
    assert where(spec_error(f"name: x\ncommand: ls\n{tail}\n")) == (field, line, message)


# ------------------------------------------------------------------------------------------ workflows
def workflow(steps: str, head: str = "") -> str:
    return f"name: wf\ntype: workflow\n{head}steps:\n" + textwrap.indent(textwrap.dedent(steps), "  ")


BAD_WORKFLOWS = [
    # the steps themselves
    (workflow("", head="") + "  []\n", "steps", 4, "must list at least one step"),
    ("name: wf\ntype: workflow\n", "steps", 1, "is required"),
    ("name: wf\ntype: workflow\nsteps: {a: 1}\n", "steps", 3, "must be a list of steps, not a mapping"),
    (workflow("- ls\n"), "steps[0]", 4, "must be a step: a mapping of fields (name: ..., command: ...), not 'ls'"),
    (workflow("- {name: a, command: ls}\n- command: ls\n"), "steps[1].name", 5, "is required"),
    (workflow("- {name: a, command: ls}\n- {name: b}\n"), "steps[1].command", 5, "is required"),
    (
        workflow("- {name: a, command: ls}\n- {name: A, command: ls}\n"),
        "steps[1].name",
        5,
        f"'A' is not a name: {NAME_RULES}",
    ),
    (
        workflow("- {name: a, command: ls}\n- {name: b, command: ls}\n- name: a\n  command: ls\n"),
        "steps[2].name",
        6,
        "'a' is already the name of steps[0]",
    ),
    (
        workflow("- {name: a, command: ls}\n- {name: b, command: ls, depend_on: [a]}\n"),
        "steps[1]",
        5,
        "unknown field 'depend_on' (did you mean 'depends_on'?)",
    ),
    (
        workflow("- name: a\n  command: ls\n  resources: {cpus: -2}\n"),
        "steps[0].resources.cpus",
        6,
        "must be a number > 0, not -2",
    ),
    (
        workflow("- name: a\n  command: ls\n  constraints: [{unique: zone}, {attribute: rack}]\n"),
        "steps[0].constraints[1].attribute",
        6,
        "must be a mapping like {rack: r1}, not 'rack'",
    ),
    # dependencies
    (
        workflow("- {name: a, command: ls}\n- name: b\n  command: ls\n  depends_on: [x]\n"),
        "steps[1].depends_on[0]",
        7,
        "unknown step 'x'",
    ),
    (
        workflow("- {name: fetch, command: ls}\n- {name: b, command: ls, depends_on: [fetc]}\n"),
        "steps[1].depends_on[0]",
        5,
        "unknown step 'fetc' (did you mean 'fetch'?)",
    ),
    (
        workflow("- {name: a, command: ls}\n- name: b\n  command: ls\n  depends_on:\n    - a\n    - b\n"),
        "steps[1].depends_on[1]",
        9,
        "a step cannot depend on itself",
    ),
    (
        workflow("- {name: a, command: ls}\n- {name: b, command: ls, depends_on: [a, a]}\n"),
        "steps[1].depends_on[1]",
        5,
        "'a' is listed twice",
    ),
    (
        workflow("- {name: a, command: ls, depends_on: a}\n"),
        "steps[0].depends_on",
        4,
        "must be a list of step names, not 'a'",
    ),
    (
        workflow("- {name: a, command: ls, depends_on: [1]}\n"),
        "steps[0].depends_on[0]",
        4,
        "must be a step name, not 1 (quote it to make it text)",
    ),
    # cycles: the path, at the depends_on of the step where the cycle starts
    (
        workflow("- {name: a, command: ls, depends_on: [b]}\n- {name: b, command: ls, depends_on: [a]}\n"),
        "steps[0].depends_on",
        4,
        "cycle a -> b -> a",
    ),
    (
        workflow(
            "- {name: start, command: ls}\n"
            "- {name: x, command: ls, depends_on: [start, y]}\n"
            "- name: y\n  command: ls\n  depends_on: [z]\n"
            "- {name: z, command: ls, depends_on: [x]}\n"
            "- {name: after, command: ls, depends_on: [z]}\n"
        ),
        "steps[1].depends_on",
        5,
        "cycle x -> y -> z -> x",
    ),
    # batch fields in a workflow and workflow fields in a batch
    (
        workflow("- {name: a, command: ls}\n", head="command: ls\n"),
        "command",
        3,
        "put it in a step: a workflow's task fields belong to its steps",
    ),
    (
        workflow("- {name: a, command: ls}\n", head="count: 3\n"),
        "count",
        3,
        "put it in a step: a workflow's task fields belong to its steps",
    ),
    (
        workflow("- {name: a, command: ls}\n", head="depends_on: [a]\n"),
        "depends_on",
        3,
        "put it in a step: a workflow's task fields belong to its steps",
    ),
    ("name: x\ncommand: ls\nsteps: []\n", "steps", 3, "a batch job has no steps (a workflow has: type: workflow)"),
    ("name: x\ncommand: ls\non_failure: continue\n", "on_failure", 3, "only a workflow has on_failure"),
    (
        "name: x\ncommand: ls\ndepends_on: [y]\n",
        "depends_on",
        3,
        "only a workflow's steps depend on others (type: workflow)",
    ),
    (
        workflow("- {name: a, command: ls}\n", head="on_failure: stop\n"),
        "on_failure",
        3,
        "must be one of fail, continue, not 'stop'",
    ),
]


@pytest.mark.parametrize(
    ("text", "field", "line", "message"), BAD_WORKFLOWS, ids=[f"{i}" for i in range(len(BAD_WORKFLOWS))]
)
def test_bad_workflows(text: str, field: str, line: int, message: str) -> None:
    assert where(spec_error(text)) == (field, line, message)


def test_a_long_chain_is_not_a_cycle_and_needs_no_recursion() -> None:
    steps = "".join(f"- {{name: s{i}, command: ls{f', depends_on: [s{i - 1}]' if i else ''}}}\n" for i in range(3000))
    spec = parse_spec(workflow(steps))
    assert len(spec.steps) == 3000 and spec.steps[-1].depends_on == ("s2998",)
    looped = workflow(steps.replace("{name: s0, command: ls}", "{name: s0, command: ls, depends_on: [s2999]}"))
    assert spec_error(looped).message.startswith("cycle s0 -> s2999 -> s2998 -> ")


# ------------------------------------------------------------------------------------------ check_fits
AGENTS = [
    {"cpus": 2.0, "mem": 4096.0, "disk": 10000.0, "gpus": 0.0, "ports": 1001.0},
    {"cpus": 4.0, "mem": 2048.0, "disk": 10000.0, "gpus": 1.0, "ports": 1001.0},
]


def test_check_fits_accepts_what_some_agent_can_run() -> None:
    check_fits(parse_spec(WORKFLOW.replace("count: 4", "count: 1")), AGENTS)
    check_fits(parse_spec(ISSUE_EXAMPLE.replace("count: 20", "count: 6")), AGENTS)  # a gang of 6: 2 + 4 cpus
    check_fits(parse_spec("name: x\ncommand: ls\nresources: {cpus: 64}\n"), [])  # no agents known yet: no verdict


def test_check_fits_names_the_resource_and_the_largest_agent() -> None:
    spec = parse_spec("name: x\ncommand: ls\ncount: 3\nresources:\n  cpus: 3\n  mem: 4096\n", "f.yaml")
    with pytest.raises(SpecError) as e:
        check_fits(spec, AGENTS)  # cpus 3 fits the second agent, mem 4096 the first: no agent has both
    assert str(e.value) == "f.yaml:4: resources: needs cpus 3, mem 4096 per task; no agent has all of that"
    check_fits(spec, [{"cpus": 3.0, "mem": 4096.0}])
    spec = parse_spec("name: x\ncommand: ls\ncount: 3\nresources:\n  cpus: 8\n", "f.yaml")
    with pytest.raises(SpecError) as e:
        check_fits(spec, AGENTS)
    assert str(e.value) == "f.yaml:4: resources: needs cpus 8 per task; the largest agent has 4"


def test_check_fits_in_a_workflow_names_the_step() -> None:
    spec = parse_spec(WORKFLOW, "wf.yaml")  # step c: 4 tasks of 2 cpus and 1 gpu, one agent has a gpu
    with pytest.raises(SpecError) as e:
        check_fits(spec, AGENTS)
    assert str(e.value) == (
        "wf.yaml:21: steps[2].resources: a gang of 4 starts all at once, but the whole cluster fits 1 of its tasks "
        "(cpus 2, mem 2048, gpus 1 each)"
    )
    big = parse_spec(WORKFLOW.replace("gpus: 1", "gpus: 2"), "wf.yaml")
    with pytest.raises(SpecError) as e:
        check_fits(big, AGENTS)
    assert (e.value.field, e.value.line, e.value.message) == (
        "steps[2].resources",
        21,
        "needs gpus 2 per task; the largest agent has 1",
    )


def test_check_fits_ports_and_a_spec_made_in_code() -> None:
    spec = JobSpec(name="x", type="batch", steps=(StepSpec("x", "ls", resources=TaskResources(ports=5), line=1),))
    with pytest.raises(SpecError) as e:
        check_fits(spec, [{"cpus": 1.0, "mem": 1024.0, "ports": 2.0}])
    assert (e.value.field, e.value.line, e.value.message) == (
        "resources",
        1,
        "needs ports 5 per task; the largest agent has 2",
    )


def test_merge_keys_follow_yamls_precedence_and_duplicates_are_only_those_written_twice() -> None:
    steps = """\
        - &fast {name: fast, command: run --fast, resources: {cpus: 1}}
        - &slow {name: slow, command: run --slow, resources: {cpus: 4}, count: 2}
        - {<<: [*fast, *slow], name: both}
        """
    spec = parse_spec(workflow(steps))
    both = spec.step("both")
    assert (both.command, both.resources.cpus, both.count) == ("run --fast", 1.0, 2)  # the first listed wins
    e = spec_error(workflow("- {<<: {name: a}, name: b, command: x, command: y}\n"))
    assert where(e) == ("steps[0].command", 4, "given twice")


@pytest.mark.parametrize(
    ("tail", "field", "line", "message"),
    [
        ("resources: &r {cpus: 1, <<: *r}", "resources", 3, "a merge (<<) includes the mapping itself"),
        ("<<: 5", "", 3, "a merge (<<) takes a mapping or a list of mappings"),
        ("constraints: &c [*c]", "constraints[0]", 3, "must be a mapping like {unique: zone}, not a list"),
    ],
)
def test_odd_yaml_is_refused_not_a_traceback(tail: str, field: str, line: int, message: str) -> None:
    assert where(spec_error(f"name: x\ncommand: ls\n{tail}\n")) == (field, line, message)


def test_yaml_nested_without_end_is_one_line() -> None:
    assert where(spec_error("name: x\ncommand: ls\nlabels: " + "[" * 20000 + "\n")) == (
        "",
        None,
        "not valid YAML: nested too deeply",
    )
