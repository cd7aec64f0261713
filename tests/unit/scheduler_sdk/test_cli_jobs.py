"""`aiomesos job ...` without a jobs service: argument parsing and errors (exit codes, one line), the DAG
drawing, the tables from hand-built jobs_pb2 messages, the progress follower against a fake client, and the
commands end to end against a fake JobsClient. The `job validate` / bad-spec tests read real files with
spec.load_spec (the spec parser)."""

from __future__ import annotations

import io
import json
import sys
import types
from pathlib import Path
from typing import Any

import grpc
import pytest

from aiomesos.v1 import jobs_pb2 as jpb
from scheduler_sdk.cli import jobs as jobs_cli
from scheduler_sdk.cli import jobs_common
from scheduler_sdk.cli import task as task_cli
from scheduler_sdk.cli.main import build_parser
from scheduler_sdk.frameworks.jobs.client import JobsError
from scheduler_sdk.frameworks.jobs.spec import JobSpec, StepSpec
from scheduler_sdk.security.config import CONFIG_ENV
from tests.unit.scheduler_sdk.cli_jobs_fakes import (
    NOW,
    FakeService,
    cli,
    fake_service,
    job_status,
    one_line,
    render,
    run_status,
    slot,
)


def steps(*edges: str, states: dict[str, str] | None = None) -> list[jpb.StepStatus]:
    """Steps from "a->b" edges and lone "c" names, in the order first named."""
    deps: dict[str, list[str]] = {}
    for edge in edges:
        names = edge.split("->")
        for n in names:
            deps.setdefault(n, [])
        if len(names) == 2:
            deps[names[1]].append(names[0])
    return [jpb.StepStatus(name=n, state=(states or {}).get(n, "waiting"), depends_on=d) for n, d in deps.items()]


# ----------------------------------------------------------------------------------------- the DAG
def test_two_chains_draw_as_two_layers_with_their_edges() -> None:
    drawn = draw(steps("a->b", "c->d", states={"a": "succeeded", "c": "running"}))
    assert drawn == ["1  a (succeeded)   c (running)", "     a -> b", "     c -> d", "2  b (waiting)   d (waiting)"]


def test_a_diamond_has_three_layers_and_four_edges() -> None:
    drawn = draw(steps("a->b", "a->c", "b->d", "c->d", states={"a": "succeeded", "b": "failed", "c": "running"}))
    assert drawn == [
        "1  a (succeeded)",
        "     a -> b",
        "     a -> c",
        "2  b (failed)   c (running)",
        "     b -> d",
        "     c -> d",
        "3  d (waiting)",
    ]


def test_a_step_is_as_deep_as_its_longest_chain_and_unknown_dependencies_are_ignored() -> None:
    dag = steps("a->b", "b->c", "a->c")
    dag.append(jpb.StepStatus(name="e", state="waiting", depends_on=["ghost"]))
    drawn = draw(dag)
    assert drawn[0] == "1  a (waiting)   e (waiting)" and drawn[-1] == "3  c (waiting)"
    assert "     a -> c" in drawn and "     b -> c" in drawn
    assert jobs_cli.draw_dag([]) == ""


def test_the_coloured_dag_is_rich_markup_of_the_same_drawing() -> None:
    from rich.text import Text

    dag = steps("a->b", states={"a": "succeeded"})
    coloured = jobs_cli.draw_dag(dag, color=True)
    assert "[green]succeeded[/]" in coloured
    assert Text.from_markup(coloured).plain == jobs_cli.draw_dag(dag)


def draw(dag: list[jpb.StepStatus]) -> list[str]:
    return jobs_cli.draw_dag(dag).splitlines()


# ----------------------------------------------------------------------------------------- tables
def test_short_times_are_local_with_the_date_only_when_not_today() -> None:
    assert jobs_common.short_time(0) == "-"
    assert jobs_common.short_time(NOW + 65, now=NOW) == "12:01:05"
    assert jobs_common.short_time(NOW - 86400, now=NOW) == "2030-05-31 12:00:00"
    assert [jobs_common.took(s) for s in (3.21, 245, 7380)] == ["3.2s", "4m05s", "2h03m"]


def test_job_list_rows_show_the_latest_run_and_the_schedule() -> None:
    jobs = [
        jpb.JobSummary(
            job_id="train", type="batch", role="ml", state="running", run_id="r2", tasks=20, succeeded=12, failed=1,
            running=7,
        ),
        jpb.JobSummary(
            job_id="nightly", type="workflow", role="*", state="scheduled", schedule="0 2 * * *", next_run_at=NOW + 3600
        ),
    ]  # fmt: skip
    rows = jobs_cli.job_rows(jobs, now=NOW)
    assert rows == [
        ["train", "batch", "ml", "running", "r2", "12/20", "1", "7", "-", "-"],
        ["nightly", "workflow", "*", "scheduled", "-", "-", "-", "-", "0 2 * * *", "13:00:00"],
    ]
    text = render(jobs_common.table("2 jobs", jobs_cli.JOB_COLUMNS, rows, state_column=3))
    assert "NEXT RUN" in text and "12/20" in text and "0 2 * * *" in text


def test_task_rows_say_where_each_ran_how_it_ended_and_why_a_queued_one_waits() -> None:
    run = run_status(
        "running",
        [
            slot("x", 0, "succeeded", hostname="agent1", agent_id="S1", started_at=NOW - 5, ended_at=NOW - 1,
                 exit_code=0),
            slot("x", 1, "failed", attempt=2, agent_id="S2", exit_code=7, message="exit 7"),
            slot("x", 2, "queued", why_waiting="no agent has cpus 4", message=""),
        ],
    )  # fmt: skip
    rows = jobs_cli.task_rows(run, now=NOW)
    assert rows == [
        ["x", "0", "0", "succeeded", "agent1", "11:59:55", "11:59:59", "0", "-"],
        ["x", "1", "2", "failed", "S2", "-", "-", "7", "exit 7"],
        ["x", "2", "0", "queued", "-", "-", "-", "-", "no agent has cpus 4"],
    ]
    text = render(jobs_common.table("3 tasks", jobs_cli.TASK_COLUMNS, rows, state_column=3))
    assert "no agent has cpus 4" in text and "agent1" in text


def test_history_rows_include_skipped_cron_times() -> None:
    runs = [
        jpb.RunSummary(run_id="r1", state="succeeded", trigger="cron", scheduled_for=NOW - 600, created_at=NOW - 600,
                       ended_at=NOW - 590, tasks=2, succeeded=2),
        jpb.RunSummary(state="skipped", trigger="cron", scheduled_for=NOW - 300),
    ]  # fmt: skip
    assert jobs_cli.run_rows(runs, now=NOW) == [
        ["r1", "cron", "11:50:00", "succeeded", "11:50:00", "11:50:10", "2/2", "0"],
        ["-", "cron", "11:55:00", "skipped", "-", "-", "-", "-"],
    ]


def test_the_status_summary_names_the_job_and_its_run() -> None:
    status = job_status(run_status("running", [slot("x", 0, "running"), slot("x", 1, "succeeded")]))
    head, run = jobs_cli.status_summary(status, now=NOW)
    assert head == "job x: batch, role ml, 1 run"
    assert run == "run r1: running, created 11:59:50; 1/2 succeeded, 0 failed, 1 running"
    status.run.trigger, status.run.scheduled_for, status.run.ended_at = "cron", NOW - 10, NOW
    run = jobs_cli.status_summary(status, now=NOW)[1]
    assert run.startswith("run r1 (cron for 11:59:50): running, created 11:59:50, ended 12:00:00; ")
    assert jobs_cli.status_summary(job_status(None), now=NOW)[1] == "no run yet (scheduled)"


def test_json_keeps_the_proto_field_names_and_zero_values() -> None:
    as_json = jobs_common.to_json(job_status(run_status("running", [slot("x", 0, "running")])))
    assert as_json["run"]["tasks"][0]["index"] == 0 and as_json["run"]["tasks"][0]["why_waiting"] == ""
    assert as_json["job"]["job_id"] == "x"


# ----------------------------------------------------------------------------------------- following a run
class Statuses:
    """A fake jobs service: each get_job answers the next item (a JobStatus, or a JobsError to raise)."""

    def __init__(self, *answers: jpb.JobStatus | JobsError) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, str]] = []

    async def get_job(self, job_id: str, run_id: str = "") -> jpb.JobStatus:
        self.asked.append((job_id, run_id))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, JobsError):
            raise answer
        return answer


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def PlainView(out: io.StringIO) -> jobs_common.PlainView:
    return jobs_common.PlainView(out, jobs_cli.progress_line)


async def follow(service: Any, view: Any, **kw: Any) -> jpb.JobStatus:
    """Follow run r1 of job x until it ends, as `job run` of a batch job does."""
    return await jobs_common.follow_job(service, "x", "r1", view, jobs_cli.run_ended, **kw)


def _progress(succeeded: int, failed: int, running: int, state: str = "running", total: int = 4) -> jpb.JobStatus:
    states = ["succeeded"] * succeeded + ["failed"] * failed + ["running"] * running
    states += ["queued"] * (total - len(states))
    return job_status(run_status(state, [slot("x", i, s) for i, s in enumerate(states)]))


async def test_the_follower_prints_a_line_when_the_progress_changes_until_the_run_ends() -> None:
    service = Statuses(
        _progress(0, 0, 0), _progress(0, 0, 2), _progress(0, 0, 2), _progress(2, 0, 2), _progress(4, 0, 0, "succeeded")
    )
    out, fake = io.StringIO(), FakeTime()
    final = await follow(service, PlainView(out), sleep=fake.sleep, clock=fake.clock)
    assert final.run.state == "succeeded"
    assert out.getvalue().splitlines() == [
        "x: 0/4 succeeded, 0 failed, 0 running",
        "x: 0/4 succeeded, 0 failed, 2 running",
        "x: 2/4 succeeded, 0 failed, 2 running",
        "x: 4/4 succeeded, 0 failed, 0 running",
    ]
    assert service.asked == [("x", "r1")] * 5 and fake.sleeps == [0.5] * 4


async def test_the_follower_waits_through_a_short_outage_but_not_a_long_one_or_a_refusal() -> None:
    down = JobsError("cannot reach the jobs service at h:1: unavailable", grpc.StatusCode.UNAVAILABLE)
    service = Statuses(down, down, _progress(4, 0, 0, "succeeded"))
    fake = FakeTime()
    final = await follow(service, PlainView(io.StringIO()), sleep=fake.sleep, clock=fake.clock)
    assert final.run.state == "succeeded"
    with pytest.raises(JobsError):
        await follow(Statuses(down), PlainView(io.StringIO()), grace=3, sleep=fake.sleep, clock=fake.clock)
    gone = JobsError("no job 'x'", grpc.StatusCode.NOT_FOUND)
    with pytest.raises(JobsError):
        await follow(Statuses(gone), PlainView(io.StringIO()), sleep=fake.sleep)


async def test_on_a_terminal_the_bar_counts_the_succeeded_tasks_out_of_all() -> None:
    from rich.console import Console
    from rich.progress import Progress

    service = Statuses(_progress(0, 0, 1), _progress(1, 1, 2), _progress(3, 1, 0, "failed"))
    fake = FakeTime()
    with Progress(console=Console(file=io.StringIO(), force_terminal=True)) as progress:
        final = await follow(service, jobs_common.BarView(progress, jobs_cli.measure), sleep=fake.sleep)
    (task,) = progress.tasks
    assert final.run.state == "failed"
    assert (task.description, task.completed, task.total, task.fields["extra"]) == ("x", 3, 4, "1 failed, 0 running")


def test_the_outcome_names_the_first_failed_task_its_exit_code_and_why() -> None:
    done = run_status("succeeded", [slot("x", 0, "succeeded"), slot("x", 1, "succeeded")])
    done.ended_at = done.created_at + 3.25
    assert jobs_cli.outcome("x", done) == (0, "run r1 of x succeeded: 2/2 tasks in 3.2s")
    failed = run_status(
        "failed",
        [slot("x", 0, "succeeded"), slot("x", 1, "failed", attempt=1, exit_code=5, message="boom"),
         slot("x", 2, "failed", exit_code=9)],
    )  # fmt: skip
    assert jobs_cli.outcome("x", failed) == (
        1,
        "run r1 of x failed: step x task 1 (attempt 1) failed, exit code 5: boom",
    )
    stopped = run_status("stopped", [slot("x", 0, "stopped")])
    assert jobs_cli.outcome("x", stopped) == (1, "run r1 of x stopped: 0/1 tasks succeeded")


# ----------------------------------------------------------------------------------------- the commands
@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeService:
    return fake_service(monkeypatch, tmp_path)


def test_every_action_parses_and_the_service_address_comes_from_the_flag() -> None:
    p = build_parser()
    args = p.parse_args(["job", "logs", "x", "--task", "3", "--step", "b", "-f", "--stderr", "--tail", "5"])
    assert (args.job_command, args.job_id, args.task, args.step, args.follow, args.stderr, args.tail) == (
        "logs", "x", 3, "b", True, True, 5,
    )  # fmt: skip
    args = p.parse_args(["job", "run", "f.yaml", "--detach", "--dry-run", "--jobs", "h:7"])
    assert (args.file, args.detach, args.dry_run, args.jobs) == ("f.yaml", True, True, "h:7")
    assert p.parse_args(["job", "status", "x", "--run", "r2", "--json"]).run == "r2"
    assert p.parse_args(["jobs", "serve", "--master", "m:1", "--help"]).args == ["--master", "m:1", "--help"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["job"], "ACTION"),
        (["job", "status"], "JOB"),
        (["job", "logs", "x", "--task", "-1"], "--task"),
        (["job", "list", "--jobs", "nowhere"], "HOST:PORT"),
        (["job", "frobnicate"], "frobnicate"),
        (["jobs", "up"], "serve"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], service: FakeService, argv: list[str], says: str
) -> None:
    code, _, err = cli(capsys, *argv)
    assert code == 2 and says in one_line(err)
    assert service.calls == []


@pytest.mark.parametrize(
    ("error", "exit_code"),
    [
        (JobsError("no job 'nope'", grpc.StatusCode.NOT_FOUND), 2),
        (JobsError("cannot reach the jobs service at 127.0.0.1:5060: unavailable", grpc.StatusCode.UNAVAILABLE), 2),
        (JobsError("job 'nope' has a run in progress", grpc.StatusCode.FAILED_PRECONDITION), 1),
    ],
)
def test_service_errors_are_one_line_exit_2_for_bad_input_1_for_a_failed_operation(
    capsys: pytest.CaptureFixture[str], service: FakeService, error: JobsError, exit_code: int
) -> None:
    service.error = error
    for argv in (["status", "nope"], ["stop", "nope"], ["history", "nope"], ["logs", "nope"], ["list"]):
        code, out, err = cli(capsys, "job", *argv)
        assert (code, out) == (exit_code, ""), argv
        assert one_line(err) == f"aiomesos job: error: {error}"


def test_the_address_is_the_flag_else_the_client_configs_else_the_default(
    capsys: pytest.CaptureFixture[str], service: FakeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli(capsys, "job", "list")
    cli(capsys, "job", "list", "--jobs", "10.0.0.9:7001")
    config = tmp_path / "client.toml"
    config.write_text('master = "10.0.0.1:5050"\njobs = "10.0.0.1:6060"\n')
    cli(capsys, "job", "list", "--config", str(config))
    monkeypatch.setenv(CONFIG_ENV, str(config))
    cli(capsys, "job", "list")
    cli(capsys, "job", "list", "--jobs", "10.0.0.9:7001")
    assert service.addresses == ["127.0.0.1:5060", "10.0.0.9:7001", "10.0.0.1:6060", "10.0.0.1:6060", "10.0.0.9:7001"]
    code, _, err = cli(capsys, "job", "list", "--config", str(tmp_path / "missing.toml"))
    assert code == 2 and "missing.toml" in one_line(err)


def test_list_status_history_and_stop_print_tables_or_json(
    capsys: pytest.CaptureFixture[str], service: FakeService
) -> None:
    service.status = job_status(
        run_status("running", [slot("a", 0, "succeeded"), slot("b", 0, "queued", why_waiting="no offers yet")],
                   steps("a->b", states={"a": "succeeded", "b": "running"})),
        job_type="workflow",
    )  # fmt: skip
    code, out, _ = cli(capsys, "job", "status", "x")
    assert code == 0
    assert out.splitlines()[0] == "job x: workflow, role ml, 1 run"
    assert "1  a (succeeded)" in out and "     a -> b" in out and "2  b (running)" in out and "no offers yet" in out
    code, out, _ = cli(capsys, "job", "status", "x", "--run", "r7", "--json")
    assert code == 0 and json.loads(out)["run"]["tasks"][1]["why_waiting"] == "no offers yet"
    assert service.calls[-1] == ("get_job", ("x", "r7"))
    code, out, _ = cli(capsys, "job", "list", "--json")
    assert code == 0 and [j["job_id"] for j in json.loads(out)] == ["x"]
    code, out, _ = cli(capsys, "job", "list")
    assert code == 0 and "1 jobs" in out and "workflow" in out
    code, out, _ = cli(capsys, "job", "history", "x", "--json")
    assert code == 0 and [r["state"] for r in json.loads(out)] == ["succeeded", "skipped"]
    code, out, _ = cli(capsys, "job", "history", "x")
    assert code == 0 and "skipped" in out
    code, out, _ = cli(capsys, "job", "stop", "x")
    assert (code, out) == (0, "stopped run r1 of x (3 tasks killed)\n")


def _spec(monkeypatch: pytest.MonkeyPatch, schedule: str | None = None) -> None:
    spec = JobSpec(
        name="x", type="batch", steps=(StepSpec(name="x", command="true", count=4),), schedule=schedule,
        source="name: x\ncommand: 'true'\ncount: 4\n",
    )  # fmt: skip
    monkeypatch.setattr(jobs_cli, "load_job_spec", lambda path: spec)


def test_run_submits_then_follows_the_run_to_its_end(
    capsys: pytest.CaptureFixture[str], service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    _spec(monkeypatch)
    code, out, _ = cli(capsys, "job", "run", "x.yaml")
    assert code == 0
    assert service.calls[0] == ("submit", ("name: x\ncommand: 'true'\ncount: 4\n", "x.yaml", False))
    assert service.calls[1] == ("get_job", ("x", "r1"))
    assert out.splitlines()[0] == "job x, run r1"
    assert out.splitlines()[1] == "x: 4/4 succeeded, 0 failed, 0 running"
    assert out.splitlines()[2].startswith("run r1 of x succeeded: 4/4 tasks in ")

    failed = run_status("failed", [slot("x", 0, "failed", exit_code=5, message="it broke")])
    service.status = job_status(failed)
    code, out, _ = cli(capsys, "job", "run", "x.yaml")
    assert (
        code == 1
        and out.splitlines()[-1] == "run r1 of x failed: step x task 0 (attempt 0) failed, exit code 5: it broke"
    )
    service.status = job_status(run_status("stopped", [slot("x", 0, "stopped")]))
    assert cli(capsys, "job", "run", "x.yaml")[0] == 1


def test_run_detached_dry_and_cron(
    capsys: pytest.CaptureFixture[str], service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    _spec(monkeypatch)
    assert cli(capsys, "job", "run", "x.yaml", "--detach") == (0, "job x, run r1\n", "")
    assert [name for name, _ in service.calls] == ["submit"]
    code, out, _ = cli(capsys, "job", "run", "x.yaml", "--dry-run")
    assert code == 0 and "dry run: nothing submitted" in out and service.calls[-1][1][2] is True
    _spec(monkeypatch, schedule="0 2 * * *")
    service.submitted = jpb.SubmitJobResponse(job_id="x", updated=True, next_run_at=NOW)
    code, out, _ = cli(capsys, "job", "run", "x.yaml")
    assert code == 0
    assert out.splitlines() == ["job x (its spec replaced)", f"scheduled: next run at {jobs_common.short_time(NOW)}"]
    service.error = JobsError("x.yaml:3: resources: needs cpus 64 per task; the largest agent has 2",
                              grpc.StatusCode.INVALID_ARGUMENT)  # fmt: skip
    code, out, err = cli(capsys, "job", "run", "x.yaml")
    assert (code, out) == (2, "") and "needs cpus 64" in one_line(err)


def test_logs_reads_the_chosen_task_with_the_task_logs_machinery(
    capsys: pytest.CaptureFixture[str], service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.status = job_status(
        run_status("running", [
            slot("a", 0, "succeeded", agent_id="S1"), slot("a", 1, "running", agent_id="S2", task_id="x.r1.a.1.2"),
            slot("b", 0, "waiting", task_id=""), slot("b", 1, "queued", why_waiting="no offers yet"),
        ], steps("a->b")),
        job_type="workflow",
    )  # fmt: skip
    read: list[tuple[str, str, bool, bool, int | None, str]] = []

    async def cmd_logs(args: Any) -> int:
        read.append((args.task_id, args.framework, args.follow, args.stderr, args.tail, args.master))
        return 0

    monkeypatch.setattr(task_cli, "cmd_logs", cmd_logs)
    assert cli(capsys, "job", "logs", "x")[0] == 0
    assert cli(capsys, "job", "logs", "x", "--task", "1", "-f", "--stderr", "--tail", "3", "--master", "m:5")[0] == 0
    assert read == [
        ("x.r1.a.0.0", "", False, False, None, "127.0.0.1:5050"),
        ("x.r1.a.1.2", "", True, True, 3, "m:5"),
    ]
    for argv, says in (
        (["--step", "b"], "has not run: waiting"),
        (["--step", "b", "--task", "1"], "has not run: queued: no offers yet"),
        (["--step", "zz"], "no step 'zz'"),
        (["--task", "9"], "no task 9 in step a"),
    ):
        code, out, err = cli(capsys, "job", "logs", "x", *argv)
        assert (code, out) == (2, "") and says in one_line(err), argv
    service.status = job_status(None)
    code, _, err = cli(capsys, "job", "logs", "x")
    assert code == 2 and "has no run yet" in one_line(err)


def test_jobs_serve_runs_the_daemon_in_this_process_with_the_rest_of_the_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    got: list[list[str]] = []

    def daemon_main(argv: list[str]) -> int:
        got.append(argv)
        return 3

    daemon = types.ModuleType("scheduler_sdk.frameworks.jobs.daemon")
    daemon.main = daemon_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "scheduler_sdk.frameworks.jobs.daemon", daemon)
    code, _, _ = cli(capsys, "jobs", "serve", "--master", "m:5050", "--work-dir", "/tmp/j", "--port", "0")
    assert (code, got) == (3, [["--master", "m:5050", "--work-dir", "/tmp/j", "--port", "0"]])


# ----------------------------------------------------------------------------------------- with the spec parser
GOOD = "name: nightly-train\nrole: ml\ncount: 20\ncommand: python train.py --shard $AIOMESOS_TASK_INDEX\n"
WORKFLOW = """name: pipeline
type: workflow
steps:
  - {name: a, command: "true"}
  - {name: b, command: "true", depends_on: [a], count: 3}
"""
BAD = "name: nightly-train\ncomand: true\n"


def test_validate_a_good_batch_and_workflow_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    batch, workflow = tmp_path / "train.yaml", tmp_path / "pipeline.yaml"
    batch.write_text(GOOD)
    workflow.write_text(WORKFLOW)
    assert cli(capsys, "job", "validate", str(batch)) == (
        0,
        f"{batch}: valid (batch job 'nightly-train', 20 tasks)\n",
        "",
    )
    code, out, _ = cli(capsys, "job", "validate", str(workflow))
    assert (code, out) == (0, f"{workflow}: valid (workflow job 'pipeline', 2 steps, 4 tasks)\n")


def test_validate_a_bad_spec_or_a_missing_file_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    code, out, err = cli(capsys, "job", "validate", str(bad))
    assert (code, out) == (2, "")
    assert one_line(err).startswith(f"aiomesos job: error: {bad}:2: ") and "unknown field 'comand'" in err
    code, out, err = cli(capsys, "job", "validate", str(tmp_path / "nope.yaml"))
    assert (code, out) == (2, "") and "nope.yaml" in one_line(err)


def test_run_never_submits_a_bad_spec(capsys: pytest.CaptureFixture[str], service: FakeService, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    code, out, err = cli(capsys, "job", "run", str(bad))
    assert (code, out) == (2, "") and "unknown field 'comand'" in one_line(err)
    assert service.calls == []
    good = tmp_path / "train.yaml"
    good.write_text(GOOD)
    code, _, _ = cli(capsys, "job", "run", str(good), "--detach")
    assert code == 0 and service.calls == [("submit", (GOOD, str(good), False))]
