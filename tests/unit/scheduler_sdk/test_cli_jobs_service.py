"""`aiomesos job ...` of services and streams without a jobs service: `job scale|endpoints|promote|revert`, what
`job list|status|history` show of them (tables from hand-built jobs_pb2 messages), `job run` following a deployment
against a fake JobsClient, bad input (exit 2, one line), and JobsClient's new methods against an in-process gRPC
server (the RPC names and messages as jobs.proto has them)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from aiomesos.v1 import jobs_pb2 as jpb
from aiomesos.v1 import jobs_pb2_grpc
from scheduler_sdk.cli import jobs as jobs_cli
from scheduler_sdk.cli import jobs_common
from scheduler_sdk.cli import jobs_service as svc
from scheduler_sdk.frameworks.jobs.client import JobsClient, JobsError
from scheduler_sdk.frameworks.jobs.spec import JobSpec, StepSpec, UpdatePolicy
from scheduler_sdk.security.config import ClientConfig
from tests.unit.scheduler_sdk.cli_jobs_fakes import NOW, FakeService, cli, fake_service, one_line, render, slot


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeService:
    monkeypatch.setattr(jobs_common, "POLL_INTERVAL", 0.0)
    fake = fake_service(monkeypatch, tmp_path)
    fake.submitted = jpb.SubmitJobResponse(job_id="web", run_id="r1")
    return fake


# ----------------------------------------------------------------------------------------- builders
def deployment(state: str, version: int = 2, **kw: Any) -> jpb.DeploymentStatus:
    kw.setdefault("from_version", version - 1)
    kw.setdefault("wanted", 3)
    return jpb.DeploymentStatus(version=version, state=state, started_at=NOW - 20, **kw)


def web(
    tasks: list[jpb.TaskSlot] | None = None,
    d: jpb.DeploymentStatus | None = None,
    *,
    version: int = 2,
    healthy: int = 3,
    run_state: str = "running",
    job_type: str = "service",
    steps: list[str] | None = None,
) -> jpb.JobStatus:
    job = jpb.JobSummary(
        job_id="web", type=job_type, role="web", state=run_state, runs=1, run_id="r1", version=version,
        healthy=healthy, instances=3, deployment=d.state if d else "",
    )  # fmt: skip
    run = jpb.RunStatus(
        run_id="r1", state=run_state, created_at=NOW - 30, tasks=tasks or [],
        steps=[jpb.StepStatus(name=n, state="running") for n in steps or []],
    )  # fmt: skip
    status = jpb.JobStatus(job=job, run=run)
    if d is not None:
        status.deployment.CopyFrom(d)
    return status


def instance(index: int, state: str = "running", health: str = "healthy", step: str = "web", **kw: Any) -> jpb.TaskSlot:
    kw.setdefault("version", 2)
    kw.setdefault("hostname", f"agent{index}")
    kw.setdefault("ports", [31000 + index])
    return slot(step, index, state, health=health, started_at=NOW - 5, **kw)


def _service_spec(monkeypatch: pytest.MonkeyPatch, job_type: str = "service") -> None:
    stages = [StepSpec(name="web", command="python3 -m http.server $PORT0", count=3)]
    if job_type == "stream":
        stages = [StepSpec(name="gen", command="gen", count=2), StepSpec(name="count", command="count", count=1)]
    spec = JobSpec(
        name="web", type=job_type, steps=tuple(stages), update=UpdatePolicy(canary=0),
        source=f"name: web\ntype: {job_type}\n",
    )  # fmt: skip
    monkeypatch.setattr(jobs_cli, "load_job_spec", lambda path: spec)


# ----------------------------------------------------------------------------------------- tables
def test_list_shows_a_services_healthy_instances_in_the_succeeded_column() -> None:
    jobs = [
        web(d=deployment("running"), healthy=2).job,
        jpb.JobSummary(job_id="train", type="batch", role="ml", state="running", run_id="r2", tasks=20, succeeded=12,
                       failed=1, running=7),
    ]  # fmt: skip
    jobs[0].running = 3
    rows = jobs_cli.job_rows(jobs, now=NOW)
    assert rows == [
        ["web", "service", "web", "running", "r1", "2/3 healthy", "0", "3", "-", "-"],
        ["train", "batch", "ml", "running", "r2", "12/20", "1", "7", "-", "-"],
    ]
    assert len(jobs_cli.JOB_COLUMNS) == len(rows[0])


def test_status_says_the_version_its_health_and_the_deployment_with_its_message() -> None:
    d = deployment("running", placed=2, healthy=1, message="waiting for instance 1 of version 2 to be healthy")
    status = web(d=d, healthy=2)
    status.job.owner = "alice"
    assert svc.status_lines(status, now=NOW) == [
        "job web: service, role web, owner alice, 1 run",
        "run r1: running, created 11:59:30",
        "version 2: 2/3 healthy; deployment v1 -> v2 running: 2/3 placed, 1/3 healthy; waiting for instance 1 of "
        "version 2 to be healthy",
    ]
    first = web(d=deployment("succeeded", version=1, placed=3, healthy=3), version=1)
    assert (
        svc.status_lines(first, now=NOW)[2]
        == "version 1: 3/3 healthy; deployment v1 succeeded: 3/3 placed, 3/3 healthy"
    )
    assert svc.status_lines(web(), now=NOW)[2] == "version 2: 3/3 healthy; no deployment yet"


def test_status_of_paused_canaries_says_how_to_go_on() -> None:
    lines = svc.status_lines(web(d=deployment("paused", placed=1, healthy=1, canaries=1)), now=NOW)
    assert lines[2] == "version 2: 3/3 healthy; deployment v1 -> v2 paused: 1/3 placed, 1/3 healthy, 1 canary"
    assert lines[3] == "canaries healthy: `aiomesos job promote web` to go on"
    promoted = deployment("running", canaries=2, promoted=True)
    assert svc.deployment_counts(promoted) == "0/3 placed, 0/3 healthy, 2 canaries (promoted)"


def test_instance_rows_show_version_health_ports_and_a_crash_loop() -> None:
    tasks = [
        instance(0, ports=[31000, 31001]),
        instance(1, version=3, canary=True, health="", state="staging"),
        instance(2, state="queued", health="", hostname="", ports=[], crash_looping=True, failures=4,
                 why_waiting="crash-looping: 4 failures in a row; restarting in 16s"),
        instance(3, state="running", health="unhealthy", crash_looping=True, failures=3, message="exit 1"),
        instance(4, state="queued", health="", hostname="", ports=[], crash_looping=True, failures=5, version=0),
    ]  # fmt: skip
    rows = svc.instance_rows(tasks, now=NOW)
    assert rows == [
        ["0", "2", "0", "running", "healthy", "agent0", "31000,31001", "11:59:55", "-"],
        ["1", "3 canary", "0", "staging", "-", "agent1", "31001", "11:59:55", "-"],
        ["2", "2", "0", "queued", "-", "-", "-", "11:59:55", "crash-looping: 4 failures in a row; restarting in 16s"],
        ["3", "2", "0", "running", "unhealthy", "agent3", "31003", "11:59:55",
         "crash-looping: 3 failures in a row; exit 1"],
        ["4", "-", "0", "queued", "-", "-", "-", "11:59:55", "crash-looping: 5 failures in a row"],
    ]  # fmt: skip
    assert svc.INSTANCE_COLUMNS[3] == "STATE" and len(svc.INSTANCE_COLUMNS) == len(rows[0])


def test_a_streams_workers_are_grouped_by_stage_in_data_order() -> None:
    tasks = [
        instance(1, step="count", health=""),
        instance(0, step="gen"),
        instance(0, step="count"),
        instance(1, step="gen"),
    ]
    status = web(tasks, job_type="stream", steps=["gen", "count", "sink"])
    assert [(name, [t.index for t in ts]) for name, ts in svc.stages(status.run)] == [
        ("gen", [0, 1]),
        ("count", [0, 1]),
        ("sink", []),
    ]
    titles = [t.title.plain for t in svc.instance_tables(status)]
    assert titles == [
        "stage gen: 2 workers, 2 healthy",
        "stage count: 2 workers, 1 healthy",
        "stage sink: 0 workers, 0 healthy",
    ]
    assert [t.title.plain for t in svc.instance_tables(web([instance(0)]))] == ["1 instance, 1 healthy"]


def test_history_rows_of_versions_and_deployments() -> None:
    versions = [
        jpb.JobVersion(version=1, created_at=NOW - 600, cause="submit", owner="alice", stable=True),
        jpb.JobVersion(version=2, created_at=NOW - 300, cause="submit", owner="alice"),
        jpb.JobVersion(version=3, created_at=NOW - 200, cause="auto-revert", reverted_from=1),
    ]
    assert svc.version_rows(versions, now=NOW) == [
        ["1", "11:50:00", "submit", "yes", "alice"],
        ["2", "11:55:00", "submit", "no", "alice"],
        ["3", "11:56:40", "auto-revert to v1", "no", "-"],
    ]
    deployments = [
        deployment("succeeded", version=1, from_version=0, placed=3, healthy=3, ended_at=NOW - 10),
        deployment("reverted", version=2, placed=1, healthy=0, canaries=1, promoted=True, ended_at=NOW - 5,
                   message="instance 2 of version 2 not healthy within 5m"),
    ]  # fmt: skip
    assert svc.deployment_rows(deployments, now=NOW) == [
        ["1", "-", "succeeded", "3/3/3", "-", "11:59:40", "11:59:50", "-"],
        ["2", "1", "reverted", "1/0/3", "1 promoted", "11:59:40", "11:59:55",
         "instance 2 of version 2 not healthy within 5m"],
    ]  # fmt: skip
    assert svc.DEPLOYMENT_COLUMNS[3] == "PLACED/HEALTHY/WANTED"


# ----------------------------------------------------------------------------------------- the commands
def test_status_of_a_service_prints_the_summary_and_the_instances(
    capsys: pytest.CaptureFixture[str], service: FakeService
) -> None:
    d = deployment("running", placed=1, healthy=0, message="replacing instance 0")
    service.status = web([instance(0, version=2), instance(1, version=1, crash_looping=True, failures=3)], d)
    code, out, _ = cli(capsys, "job", "status", "web")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "job web: service, role web, 1 run"
    assert (
        lines[2] == "version 2: 3/3 healthy; deployment v1 -> v2 running: 1/3 placed, 0/3 healthy; replacing instance 0"
    )
    assert "2 instances, 2 healthy" in out and "PORTS" in out and "31001" in out
    assert "crash-looping: 3 failures in a row" in out and "EXIT" not in out
    code, out, _ = cli(capsys, "job", "status", "web", "--json")
    status = json.loads(out)
    assert status["deployment"]["state"] == "running" and status["run"]["tasks"][1]["crash_looping"] is True


def test_history_of_a_service_adds_versions_and_deployments_and_its_json_is_an_object(
    capsys: pytest.CaptureFixture[str], service: FakeService
) -> None:
    service.history = jpb.JobHistoryResponse(
        runs=[jpb.RunSummary(run_id="r1", state="running", trigger="submit")],
        versions=[jpb.JobVersion(version=1, cause="submit", stable=True), jpb.JobVersion(version=2, cause="submit")],
        deployments=[deployment("succeeded", version=1, from_version=0), deployment("failed", message="boom")],
    )
    code, out, _ = cli(capsys, "job", "history", "web")
    assert code == 0
    assert "1 runs of web" in out and "2 versions of web" in out and "2 deployments of web" in out
    assert "PLACED/HEALTHY/WANTED" in out and "STABLE" in out and "boom" in out
    code, out, _ = cli(capsys, "job", "history", "web", "--json")
    history = json.loads(out)
    assert sorted(history) == ["deployments", "runs", "versions"]
    assert [v["version"] for v in history["versions"]] == [1, 2] and history["deployments"][1]["message"] == "boom"
    assert service.calls[-1] == ("job_history", "web")


def test_scale_endpoints_promote_and_revert(capsys: pytest.CaptureFixture[str], service: FakeService) -> None:
    assert cli(capsys, "job", "scale", "web", "5") == (0, "web: scaled from 3 to 5\n", "")
    assert service.calls[-1] == ("scale_job", ("web", 5, ""))
    assert cli(capsys, "job", "scale", "wc", "0", "--stage", "gen") == (0, "wc stage gen: scaled from 3 to 0\n", "")
    assert service.calls[-1] == ("scale_job", ("wc", 0, "gen"))

    service.endpoints = [
        jpb.Endpoint(stage="web", index=0, host="agent0", ports=[31000, 31001], address="agent0:31000", version=2),
        jpb.Endpoint(stage="web", index=2, host="agent2", ports=[], address=""),
        jpb.Endpoint(stage="web", index=3, host="agent3", ports=[31003], address="agent3:31003", version=2),
    ]
    assert cli(capsys, "job", "endpoints", "web") == (0, "agent0:31000\nagent3:31003\n", "")
    code, out, _ = cli(capsys, "job", "endpoints", "wc", "--stage", "count", "--json")
    assert code == 0 and service.calls[-1] == ("get_endpoints", ("wc", "count"))
    endpoints = json.loads(out)
    assert [e["address"] for e in endpoints] == ["agent0:31000", "", "agent3:31003"]
    assert endpoints[0]["ports"] == [31000, 31001] and endpoints[0]["index"] == 0
    service.endpoints = []
    assert cli(capsys, "job", "endpoints", "web") == (0, "", "")

    code, out, _ = cli(capsys, "job", "promote", "web")
    assert code == 0 and out.startswith("web: version 2 promoted")
    assert cli(capsys, "job", "revert", "web", "1") == (0, "web: version 4 rolls out the spec of version 1\n", "")
    assert service.calls[-1] == ("revert_job", ("web", 1))


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["scale", "web", "-1"], "-1 is below zero"),
        (["scale", "web", "three"], "'three' is not a whole number"),
        (["scale", "web", "1.5"], "'1.5' is not a whole number"),
        (["scale", "web"], "N"),
        (["revert", "web", "0"], "versions start at 1"),
        (["revert", "web", "latest"], "'latest' is not a version"),
        (["endpoints"], "JOB"),
    ],
)
def test_bad_arguments_are_one_line_exit_2_and_ask_nothing(
    capsys: pytest.CaptureFixture[str], service: FakeService, argv: list[str], says: str
) -> None:
    code, out, err = cli(capsys, "job", *argv)
    assert (code, out) == (2, "") and says in one_line(err)
    assert service.calls == []


@pytest.mark.parametrize(
    "error",
    [
        JobsError("no job 'nope'", grpc.StatusCode.NOT_FOUND),
        JobsError("count: 5000 is above the limit of 1000 instances", grpc.StatusCode.INVALID_ARGUMENT),
        JobsError("no canary waits for promotion (the deployment is succeeded)", grpc.StatusCode.FAILED_PRECONDITION),
        JobsError("job 'web' is a batch job: only services and streams scale", grpc.StatusCode.FAILED_PRECONDITION),
        JobsError("cannot reach the jobs service at 127.0.0.1:5060: unavailable", grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_refusals_of_scale_promote_revert_endpoints_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], service: FakeService, error: JobsError
) -> None:
    service.error = error
    for argv in (["scale", "nope", "3"], ["promote", "nope"], ["revert", "nope", "2"], ["endpoints", "nope"]):
        code, out, err = cli(capsys, "job", *argv)
        assert (code, out) == (2, ""), argv
        assert one_line(err) == f"aiomesos job: error: {error}"


# ----------------------------------------------------------------------------------------- job run: the deployment
def test_run_of_a_service_follows_its_deployment_until_it_succeeds(
    capsys: pytest.CaptureFixture[str], service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    _service_spec(monkeypatch)
    service.submitted = jpb.SubmitJobResponse(job_id="web", run_id="r1", updated=True)
    old = deployment("succeeded", version=1, from_version=0, placed=3, healthy=3)
    service.statuses = [
        web(d=old, version=2),  # the new version's deployment not there yet: the old one does not count
        web(d=deployment("running", placed=1), version=2),
        web(d=deployment("running", placed=1), version=2),
        web(d=deployment("running", placed=2, healthy=1), version=2),
        web(d=deployment("succeeded", placed=3, healthy=3, ended_at=NOW - 8), version=2),
    ]
    code, out, _ = cli(capsys, "job", "run", "web.yaml")
    assert code == 0
    assert out.splitlines() == [
        "job web (its spec replaced), run r1",
        "web: v1 succeeded, 3/3 placed, 3/3 healthy",
        "web: v1 -> v2 running, 1/3 placed, 0/3 healthy",
        "web: v1 -> v2 running, 2/3 placed, 1/3 healthy",
        "web: v1 -> v2 succeeded, 3/3 placed, 3/3 healthy",
        "deployment of web version 2 succeeded: 3/3 healthy in 12.0s",
    ]
    assert [name for name, _ in service.calls] == ["submit"] + ["get_job"] * 5
    assert service.calls[1] == ("get_job", ("web", "r1"))


@pytest.mark.parametrize(
    ("final", "last_line"),
    [
        (deployment("failed", message="instance 2 of version 2 not healthy within 5m"),
         "deployment of web version 2 failed: instance 2 of version 2 not healthy within 5m"),
        (deployment("cancelled"), "deployment of web version 2 cancelled: a newer version replaced it"),
    ],
)  # fmt: skip
def test_run_of_a_service_exits_1_when_its_deployment_fails(
    capsys: pytest.CaptureFixture[str],
    service: FakeService,
    monkeypatch: pytest.MonkeyPatch,
    final: jpb.DeploymentStatus,
    last_line: str,
) -> None:
    _service_spec(monkeypatch)
    service.statuses = [web(d=deployment("running"), version=2), web(d=final, version=2)]
    code, out, _ = cli(capsys, "job", "run", "web.yaml")
    assert (code, out.splitlines()[-1]) == (1, last_line)


def test_run_of_a_service_whose_update_is_reverted_reads_how_it_ended_from_the_history(
    capsys: pytest.CaptureFixture[str], service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    _service_spec(monkeypatch)
    reverted = deployment("reverted", message="instance 0 of version 2 not healthy within 1m")
    service.statuses = [
        web(d=deployment("running", placed=1), version=2),
        web(d=deployment("running", version=3, from_version=2, message="auto-revert to version 1"), version=3),
    ]
    service.history = jpb.JobHistoryResponse(deployments=[deployment("succeeded", version=1), reverted])
    code, out, _ = cli(capsys, "job", "run", "web.yaml")
    assert code == 1
    assert out.splitlines()[-1] == (
        "deployment of web version 2 failed and is reverted to the last stable version: instance 0 of version 2 not "
        "healthy within 1m"
    )
    assert service.calls[-1] == ("job_history", "web")


def test_run_of_a_canary_update_exits_0_once_the_canaries_wait_for_promotion(
    capsys: pytest.CaptureFixture[str], service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    _service_spec(monkeypatch)
    service.statuses = [
        web(d=deployment("running", canaries=1), version=2),
        web(d=deployment("paused", placed=1, healthy=1, canaries=1), version=2),
    ]
    code, out, _ = cli(capsys, "job", "run", "web.yaml")
    assert code == 0
    assert out.splitlines()[-2:] == [
        "web: v1 -> v2 paused, 1/3 placed, 1/3 healthy, 1 canary",
        "canaries healthy: `aiomesos job promote web` to go on",
    ]


def test_run_of_a_stream_stopped_under_its_deployment_exits_1_and_detach_returns_at_once(
    capsys: pytest.CaptureFixture[str], service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    _service_spec(monkeypatch, "stream")
    service.submitted = jpb.SubmitJobResponse(job_id="web", run_id="")  # an update: no new run
    service.statuses = [web(d=deployment("running"), version=2, job_type="stream", run_state="stopped")]
    code, out, _ = cli(capsys, "job", "run", "web.yaml")
    assert (code, out.splitlines()) == (
        1,
        [
            "job web",
            "web: v1 -> v2 running, 0/3 placed, 0/3 healthy",
            "run r1 of web stopped before its deployment ended",
        ],
    )
    assert service.calls[1] == ("get_job", ("web", ""))
    service.calls.clear()
    assert cli(capsys, "job", "run", "web.yaml", "--detach") == (0, "job web\n", "")
    assert [name for name, _ in service.calls] == ["submit"]


def test_a_service_spec_is_summarised_by_its_instances_a_streams_by_its_stages(
    capsys: pytest.CaptureFixture[str], service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    _service_spec(monkeypatch)
    code, out, _ = cli(capsys, "job", "run", "web.yaml", "--dry-run")
    assert (code, out) == (0, "web.yaml: valid and fits the cluster (service job 'web', 3 instances); dry run: "
                              "nothing submitted\n")  # fmt: skip
    _service_spec(monkeypatch, "stream")
    code, out, _ = cli(capsys, "job", "run", "web.yaml", "--dry-run")
    assert "(stream job 'web' (perpetual), 2 stages, 3 workers)" in out
    assert svc.spec_summary("one", "service", "", [1]) == "service job 'one', 1 instance"


def test_on_a_terminal_the_bar_counts_the_healthy_new_instances_of_those_wanted() -> None:
    m = svc.measure(web(d=deployment("running", placed=2, healthy=1)))
    assert m == jobs_common.Measure(1, 3, "2 placed, running")
    assert svc.measure(web()).total is None
    assert "waiting for its deployment" in svc.progress_line(web())


def test_tables_render() -> None:
    text = "".join(render(t) for t in svc.instance_tables(web([instance(0)], job_type="stream", steps=["web"])))
    assert "stage web: 1 worker, 1 healthy" in text and "HEALTH" in text


# ----------------------------------------------------------------------------------------- JobsClient on the wire
class Servicer(jobs_pb2_grpc.JobsServicer):
    def __init__(self) -> None:
        self.asked: list[Any] = []

    async def ScaleJob(self, request: jpb.ScaleJobRequest, context: Any) -> jpb.ScaleJobResponse:
        self.asked.append(request)
        if request.count > 1000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "count: at most 1000")
        return jpb.ScaleJobResponse(previous=3, count=request.count)

    async def PromoteJob(self, request: jpb.PromoteJobRequest, context: Any) -> jpb.PromoteJobResponse:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no canary waits for promotion")

    async def RevertJob(self, request: jpb.RevertJobRequest, context: Any) -> jpb.RevertJobResponse:
        return jpb.RevertJobResponse(version=5, reverted_from=request.version)

    async def GetEndpoints(self, request: jpb.GetEndpointsRequest, context: Any) -> jpb.GetEndpointsResponse:
        self.asked.append(request)
        return jpb.GetEndpointsResponse(endpoints=[jpb.Endpoint(stage=request.stage or "web", address="h:1")])

    async def JobHistory(self, request: jpb.JobHistoryRequest, context: Any) -> jpb.JobHistoryResponse:
        return jpb.JobHistoryResponse(runs=[jpb.RunSummary(run_id="r1")], versions=[jpb.JobVersion(version=1)])


@pytest.fixture
async def wire() -> AsyncIterator[tuple[JobsClient, Servicer]]:
    server = grpc.aio.server()
    servicer = Servicer()
    jobs_pb2_grpc.add_JobsServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with JobsClient(f"127.0.0.1:{port}", config=ClientConfig()) as client:
            yield client, servicer
    finally:
        await server.stop(None)


async def test_the_clients_new_methods_call_the_new_rpcs(wire: tuple[JobsClient, Servicer]) -> None:
    client, servicer = wire
    assert (await client.scale_job("wc", 4, "gen")).count == 4
    assert servicer.asked[-1] == jpb.ScaleJobRequest(job_id="wc", stage="gen", count=4)
    with pytest.raises(JobsError) as e:
        await client.scale_job("web", 5000)
    assert (e.value.code, str(e.value), e.value.refused) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "count: at most 1000",
        True,
    )
    with pytest.raises(JobsError) as e:
        await client.promote_job("web")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and "no canary" in str(e.value)
    assert (await client.revert_job("web", 2)) == jpb.RevertJobResponse(version=5, reverted_from=2)
    assert [x.stage for x in await client.get_endpoints("wc", "count")] == ["count"]
    history = await client.job_history("web")
    assert [v.version for v in history.versions] == [1]
    assert [r.run_id for r in await client.history("web")] == ["r1"]
