"""Sandboxes and usage statistics through real agents: `aiomesos task logs/ls`, the agent's file API and its
path safety, `aiomesos top` and the master's GetContainers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import AgentClient, AgentError, OperatorClient
from tests.e2e.harness import Recorder, agent_state, agents, eventually, framework, task

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
AIOMESOS = [sys.executable, "-m", "scheduler_sdk"]
MIB = 1024 * 1024


async def aiomesos(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *AIOMESOS, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"}
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_one_line_error(result: tuple[int, str, str], expect: str) -> None:
    code, out, err = result
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert "Traceback" not in err and expect in lines[0], lines[0]


async def test_task_logs_follow_tail_stderr_ls_and_refused_paths(cluster: LocalCluster) -> None:
    m = cluster.master_address
    rec = Recorder()
    async with framework(m, rec) as driver:
        offer = await rec.next_offer()
        # Four lines, then the task waits for the test to say go (a file appearing), then four more and a word on
        # stderr: lines 1-4 reaching the follower while the task still runs proves they stream as written.
        go = Path(f"/tmp/aiomesos-go-{os.getpid()}-{time.monotonic_ns()}")
        talker = (
            "ln -s / escape; for i in 1 2 3 4; do echo line$i; done; "
            f"while [ ! -e {go} ]; do sleep 0.05; done; for i in 5 6 7 8; do echo line$i; done; echo oops >&2"
        )
        driver.accept([offer.id], [task("talker", talker, offer.agent_id)])
        await rec.wait_state("talker", {tpb.TASK_RUNNING})

        follow = await asyncio.create_subprocess_exec(
            *AIOMESOS,
            "task",
            "logs",
            "talker",
            "--follow",
            "--master",
            m,
            stdout=subprocess.PIPE,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert follow.stdout is not None
        arrivals: list[str] = []
        deadline = time.monotonic() + 30
        try:
            while len(arrivals) < 4:
                line = await asyncio.wait_for(follow.stdout.readline(), deadline - time.monotonic())
                assert line, f"follow ended early after {arrivals}"
                arrivals.append(line.decode().strip())
            assert tpb.TASK_FINISHED not in rec.states("talker")
            go.touch()
            while line := await asyncio.wait_for(follow.stdout.readline(), deadline - time.monotonic()):
                arrivals.append(line.decode().strip())
        finally:
            go.unlink(missing_ok=True)
        code = await asyncio.wait_for(follow.wait(), 10)
        status = await rec.wait_state("talker", {tpb.TASK_FINISHED, tpb.TASK_FAILED})
        assert status.state == tpb.TASK_FINISHED
        assert code == 0
        assert arrivals == [f"line{i}" for i in range(1, 9)]

        # Once acknowledged the agent forgets the task: its sandbox is still served, found on disk.
        address = next(a.agent_info.address for a in await agents(m) if a.agent_info.id == offer.agent_id)

        async def forgotten() -> bool:
            return all(t.task.task_id != "talker" for t in (await agent_state(address)).tasks)

        await eventually(forgotten, what="the agent to forget the finished task")  # type: ignore[arg-type]

        tail, stderr, ls, ls_json, up, escape, inside_escape, unknown, no_master = await asyncio.gather(
            aiomesos("task", "logs", "talker", "--tail", "2", "--master", m),
            aiomesos("task", "logs", "talker", "--stderr", "--master", m),
            aiomesos("task", "ls", "talker", "--master", m),
            aiomesos("task", "ls", "talker", "--json", "--master", m),
            aiomesos("task", "ls", "talker", "../..", "--master", m),
            aiomesos("task", "ls", "talker", "escape", "--master", m),
            aiomesos("task", "ls", "talker", "escape/etc", "--master", m),
            aiomesos("task", "logs", "no-such-task", "--master", m),
            aiomesos("task", "logs", "talker", "--master", "127.0.0.1:1"),
        )
        assert tail == (0, "line7\nline8\n", ""), tail
        assert stderr == (0, "oops\n", ""), stderr
        assert ls[0] == 0, ls
        names = [line.split()[-1] for line in ls[1].splitlines()]
        assert names == ["escape", "stderr", "stdout"], ls[1]
        listed = {e["path"]: e for e in json.loads(ls_json[1])}
        assert listed["stdout"]["size"] == len("".join(f"line{i}\n" for i in range(1, 9)))
        assert listed["escape"]["mode"].startswith("l") and listed["stdout"]["mode"].startswith("-")
        assert_one_line_error(up, "'..' is not allowed")
        assert_one_line_error(escape, "out of the sandbox through a symlink")
        assert_one_line_error(inside_escape, "out of the sandbox through a symlink")
        assert_one_line_error(unknown, "unknown task 'no-such-task'")
        assert_one_line_error(no_master, "cannot reach the master")

        # The agent's API itself refuses them too, with INVALID_ARGUMENT; and says NOT_FOUND for what is not there.
        async with AgentClient(address) as agent_api:
            for path in ("escape/etc/passwd", "/etc/passwd", "../../../../../../etc/passwd"):
                with pytest.raises(AgentError) as refused:
                    _ = [c async for c in agent_api.read_file("talker", path)]
                assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT, (path, str(refused.value))
            with pytest.raises(AgentError) as missing:
                await agent_api.list_files("talker", "nothing-here")
            assert missing.value.code == grpc.StatusCode.NOT_FOUND
            with pytest.raises(AgentError) as no_task:
                await agent_api.list_files("no-such-task")
            assert no_task.value.code == grpc.StatusCode.NOT_FOUND
            # Ranges: from an offset, a length, from the end.
            whole = b"".join([c.data async for c in agent_api.read_file("talker", "stdout")])
            assert whole.startswith(b"line1\n")
            part = b"".join([c.data async for c in agent_api.read_file("talker", "stdout", offset=6, length=5)])
            assert part == b"line2"
            end = b"".join([c.data async for c in agent_api.read_file("talker", "stdout", offset=-6)])
            assert end == b"line8\n"


async def test_top_and_get_containers_show_a_busy_task_under_its_cfs_cap(cluster: LocalCluster) -> None:
    m = cluster.master_address
    rec = Recorder()
    async with framework(m, rec) as driver:
        offer = await rec.next_offer()
        busy = task("busy", "echo $$ > pid; exec python3 -c 'while True: pass'", offer.agent_id, cpus=0.5, mem=64)
        driver.accept([offer.id], [busy])
        await rec.wait_state("busy", {tpb.TASK_RUNNING})

        async with OperatorClient(m) as client:
            response = await client.containers()
        assert list(response.unreachable_agents) == []
        [container] = [c for c in response.containers if c.task_id == "busy"]
        assert container.agent_id == offer.agent_id
        assert container.framework_id == driver.framework_id
        assert container.state == tpb.TASK_RUNNING and container.container_id and container.sandbox
        stats = container.statistics
        assert stats.cpus_limit == pytest.approx(0.5)
        assert stats.mem_limit_bytes == 64 * MIB
        assert stats.processes >= 1 and stats.threads >= 1 and stats.timestamp > 0

        # An independent measure over about the same window: the process's own CPU time (the host may be busy with
        # more than this test, and a CFS quota is a cap, not a promise).
        pid_file = Path(container.sandbox) / "pid"
        busy_process = psutil.Process(int(await eventually(lambda: pid_file.exists() and pid_file.read_text())))
        started, before = time.monotonic(), sum(busy_process.cpu_times()[:2])
        code, out, err = await aiomesos("top", "--once", "--json", "--interval", "1", "--master", m)
        assert code == 0, err
        observed = 100.0 * (sum(busy_process.cpu_times()[:2]) - before) / (time.monotonic() - started)
        rows = json.loads(out)
        [row] = [r for r in rows if r["task_id"] == "busy"]
        assert row["agent_id"] == offer.agent_id and row["framework_id"] == driver.framework_id
        # Half a core under the CFS quota (at most; about that on a host with a core to spare), and what the process
        # itself says it used, within a generous margin.
        assert row["cpu_percent"] <= 60.0, row
        assert abs(row["cpu_percent"] - observed) <= 15.0, (row, observed)
        if observed >= 40.0:
            assert 35.0 <= row["cpu_percent"] <= 60.0, (row, observed)
        assert row["cpus_limit"] == pytest.approx(0.5)
        assert 1 * MIB < row["mem_rss_bytes"] < 64 * MIB, row
        assert row["mem_limit_bytes"] == 64 * MIB
        assert row["processes"] >= 1 and row["threads"] >= 1
        assert rows[0]["task_id"] == "busy", "sorted by CPU, busiest first"

        table, no_master = await asyncio.gather(
            aiomesos("top", "--once", "--interval", "0.2", "--master", m),
            aiomesos("top", "--once", "--master", "127.0.0.1:1"),
        )
        assert table[0] == 0 and "busy" in table[1] and "0.5 cpus" in table[1], table
        assert_one_line_error(no_master, "cannot reach the master")

        # A follow the client gives up on (the task still runs) ends at the agent too: the file is closed.
        addresses = {a.agent_info.id: a.agent_info.address for a in await agents(m)}
        daemons = {d.work_dir.joinpath("agent.addr").read_text().strip(): d for d in cluster.agent_daemons}
        busy_agent = daemons[addresses[offer.agent_id]]
        assert busy_agent.process is not None
        agent_process = psutil.Process(busy_agent.process.pid)

        def pid_file_open() -> bool:
            return any(f.path.endswith("/pid") for f in agent_process.open_files())

        async with AgentClient(addresses[offer.agent_id]) as agent_api:
            async for chunk in agent_api.read_file("busy", "pid", follow=True):
                assert chunk.data.strip().isdigit()
                assert pid_file_open()
                break
        await eventually(lambda: not pid_file_open(), what="the agent to close the file of a cancelled follow")

        # An agent that does not answer (stopped) is listed as unreachable, in bounded time; the others still count.
        other = next(a for a in await agents(m) if a.agent_info.id != offer.agent_id)
        stopped = daemons[other.agent_info.address]
        stopped.signal(signal.SIGSTOP)
        try:
            async with OperatorClient(m) as client:
                started = time.monotonic()
                response = await client.containers()
                took = time.monotonic() - started
        finally:
            stopped.signal(signal.SIGCONT)
        assert list(response.unreachable_agents) == [other.agent_info.id]
        assert [c.task_id for c in response.containers] == ["busy"]
        assert took < 4.5, took
