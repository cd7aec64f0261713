"""What `agents`, `tasks`, `top`, `quota` and `weights` show, from the master's answers: the JSON rows and the
tables, on a wide terminal and a narrow one."""

from __future__ import annotations

import pytest

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.cli import main as cli
from scheduler_sdk.cli import policy, tables
from scheduler_sdk.cli import task as task_cli
from scheduler_sdk.resources import Resources
from tests.unit.scheduler_sdk.cli.render import assert_fits_and_nothing_is_cut, assert_ids_whole, render

S = tpb.TaskStatus
MIB = 1 << 20
AGENT_ID, FRAMEWORK_ID = "5c2e9b1d0a4f-A7", "5c2e9b1d0a4f-F3"


def agents_response() -> opb.GetAgentsResponse:
    total = Resources.parse("cpus:4;mem:2048;ports:[31000-32000];cpus(eng):2;mem(eng):1024;cpus(ads):0.5")
    total = total + Resources.ports((31000, 31009), role="eng")
    agent = opb.AgentSummary(
        agent_info=rpb.AgentInfo(id=AGENT_ID, hostname="node-1.example.org", address="10.0.0.1:5051"),
        active=True,
        total=total.to_proto(),
        allocated=Resources.parse("cpus(eng):1;mem(eng):256").to_proto(),
        task_count=1,
    )
    plain = opb.AgentSummary(
        agent_info=rpb.AgentInfo(id="5c2e9b1d0a4f-A8", hostname="node-2", address="10.0.0.2:5051"),
        active=True,
        total=Resources.parse("cpus:2;mem:1024").to_proto(),
    )
    return opb.GetAgentsResponse(agents=[agent, plain])


def test_agents_show_their_reservations_per_role() -> None:
    rows = cli.agent_rows(agents_response())
    assert rows[0]["reserved"] == {
        "ads": {"cpus": 0.5},
        "eng": {"cpus": 2, "mem": 1024, "ports": [[31000, 31009]]},
    }
    assert rows[0]["resources"]["cpus"] == 6.5  # the total counts reserved and unreserved alike
    assert rows[1]["reserved"] == {}
    assert cli.reservations_text(rows[0]["reserved"]) == "ads: cpus=0.5\neng: cpus=2, mem=1024, ports=[31000-31009]"
    assert cli.reservations_text({}) == "-"


def test_agents_table_shows_the_reservations_and_keeps_ids_whole_when_narrow(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = cli.agent_rows(agents_response())
    for width in (200, 60):
        monkeypatch.setenv("COLUMNS", str(width))
        cli.print_table(rows, cli.AGENT_COLUMNS, "2 agents")
        text = capsys.readouterr().out
        assert_fits_and_nothing_is_cut(text, width)
        assert_ids_whole(text, [AGENT_ID, "5c2e9b1d0a4f-A8"])
        assert "RESERVED" in text
        if width == 200:
            assert "ads: cpus=0.5" in text and "eng: cpus=2, mem=1024, ports=[31000-31009]" in text


def task(task_id: str, *statuses: tpb.TaskStatus, state: int = tpb.TASK_RUNNING) -> opb.TaskSummary:
    return opb.TaskSummary(
        framework_id=FRAMEWORK_ID,
        task=tpb.TaskInfo(task_id=task_id, name=task_id, agent_id=AGENT_ID),
        state=state,  # type: ignore[arg-type]
        statuses=list(statuses),
    )


def test_tasks_json_carries_the_last_status_reason() -> None:
    killed = S(
        task_id="hog",
        state=tpb.TASK_FAILED,
        reason=S.REASON_CONTAINER_LIMITATION_MEMORY,
        message="Memory limit exceeded: 64 MiB",
        exit_code=137,
    )
    resp = opb.GetTasksResponse(
        tasks=[task("fresh"), task("runs", S(task_id="runs", state=tpb.TASK_RUNNING))],
        completed_tasks=[task("hog", S(task_id="hog", state=tpb.TASK_RUNNING), killed, state=tpb.TASK_FAILED)],
    )
    rows = {r["id"]: r for r in cli.task_rows(resp, include_completed=True)}
    assert rows["hog"]["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY"
    assert rows["hog"]["message"] == "Memory limit exceeded: 64 MiB" and rows["hog"]["exit_code"] == 137
    assert rows["runs"]["reason"] is None and rows["fresh"]["reason"] is None
    # a reason this CLI does not know (a newer master) is named by its number, never an exception
    odd = opb.GetTasksResponse(tasks=[task("odd", S(task_id="odd", state=tpb.TASK_FAILED, reason=999))])  # type: ignore[arg-type]
    assert cli.task_rows(odd, include_completed=False)[0]["reason"] == "unknown (999)"


def container(task_id: str, disk_used: int, disk_limit: int) -> agent_pb2.ContainerStatus:
    return agent_pb2.ContainerStatus(
        task_id=task_id,
        framework_id=FRAMEWORK_ID,
        agent_id=AGENT_ID,
        container_id=f"c-{task_id}",
        state=tpb.TASK_RUNNING,
        statistics=agent_pb2.ResourceStatistics(
            timestamp=100.0,
            cpus_limit=0.5,
            mem_rss_bytes=16 * MIB,
            mem_limit_bytes=64 * MIB,
            disk_used_bytes=disk_used,
            disk_limit_bytes=disk_limit,
            processes=1,
            threads=1,
        ),
    )


def test_top_shows_disk_used_against_the_disk_limit() -> None:
    after = {
        (AGENT_ID, FRAMEWORK_ID, t, f"c-{t}"): c
        for t, c in (("writer", container("writer", 3 * MIB, 12 * MIB)), ("nodisk", container("nodisk", 4096, 0)))
    }
    rows = {r["task_id"]: r for r in task_cli.usage_rows({}, after)}
    assert (rows["writer"]["disk_used_bytes"], rows["writer"]["disk_limit_bytes"]) == (3 * MIB, 12 * MIB)
    assert task_cli.of_limit(3 * MIB, 12 * MIB) == "12.0 MiB (25%)"
    assert task_cli.of_limit(4096, 0) == "-"
    table = task_cli.usage_table(list(rows.values()), [], "m:5050")
    wide = render(table, 200)
    assert "DISK" in wide and "3.0 MiB" in wide and "12.0 MiB (25%)" in wide and "4.0 KiB" in wide
    narrow = render(table, 60)
    assert_fits_and_nothing_is_cut(narrow, 60)
    assert_ids_whole(narrow, ["writer", "nodisk", FRAMEWORK_ID, AGENT_ID])


def test_quota_and_weights_are_tables() -> None:
    rows = [
        {"role": "eng", "weight": 2.0, "guarantee": {"cpus": 1.0, "mem": 128.0}, "limit": {"cpus": 2.0},
         "allocated": {"cpus": 0.5}},
        {"role": "ads", "weight": 1.0, "guarantee": {}, "limit": None, "allocated": {}},
    ]  # fmt: skip
    text = render(policy.quota_table(rows), 200)
    header = next(line for line in text.splitlines() if "GUARANTEE" in line)
    assert [h.strip() for h in header.split("┃")] == ["ROLE", "WEIGHT", "GUARANTEE", "LIMIT", "ALLOCATED"]
    eng = next(line for line in text.splitlines() if line.startswith(" eng"))
    assert [c.strip() for c in eng.split("│")] == ["eng", "2", "cpus=1, mem=128", "cpus=2", "cpus=0.5"]
    ads = next(line for line in text.splitlines() if line.startswith(" ads"))
    assert [c.strip() for c in ads.split("│")] == ["ads", "1", "-", "-", "-"]

    text = render(policy.weights_table({"eng": 2.0, "ads": 0.5}), 200)
    assert "ROLE" in text and "WEIGHT" in text
    assert [[c.strip() for c in line.split("│")] for line in text.splitlines() if "│" in line] == [
        ["ads", "0.5"],
        ["eng", "2"],
    ]


def test_the_cli_console_takes_the_width_from_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    assert tables.console().width == 60


def test_the_jobs_and_masters_tables_keep_their_ids_whole_when_narrow(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiomesos.v1 import jobs_pb2 as jpb
    from scheduler_sdk.cli import jobs as jobs_cli
    from scheduler_sdk.cli import jobs_common, masters

    jobs = [
        jpb.JobSummary(job_id="nightly-feature-backfill", type="workflow", role="ml/training", state="running",
                       run_id="r20261203-0200", tasks=20, succeeded=12, running=8, schedule="0 2 * * *"),
        jpb.JobSummary(job_id="web", type="service", role="web", state="running", run_id="r1", tasks=3, running=3),
    ]  # fmt: skip
    job_table = jobs_common.table("2 jobs", jobs_cli.JOB_COLUMNS, jobs_cli.job_rows(jobs), state_column=3)
    narrow = render(job_table, 60)
    assert_fits_and_nothing_is_cut(narrow, 60)
    assert_ids_whole(narrow, ["nightly-feature-backfill", "r20261203-0200", "ml/training", "web", "r1"])

    resp = opb.GetMastersResponse(
        masters=[
            opb.MasterSummary(master_id="5c2e9b1d0a4f", address="10.0.0.1:5050", hostname="m1", leader=True),
            opb.MasterSummary(master_id="77aa01bc22de", address="10.0.0.2:5050", hostname="m2"),
        ],
        leader_id="5c2e9b1d0a4f",
        registry="etcd",
    )
    monkeypatch.setenv("COLUMNS", "60")
    masters._print(masters.master_rows(resp), masters.MASTER_COLUMNS, masters.masters_title(resp))
    text = capsys.readouterr().out
    assert_fits_and_nothing_is_cut(text, 60)
    assert_ids_whole(text, ["5c2e9b1d0a4f", "77aa01bc22de", "10.0.0.1:5050", "10.0.0.2:5050"])
