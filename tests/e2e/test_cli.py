"""The `aiomesos` command line against a real cluster: tables, --json, exit codes and one-line errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler_sdk.local_cluster import LocalCluster, leftover_cgroups
from tests.e2e.harness import eventually

pytestmark = [pytest.mark.e2e]
AIOMESOS = [sys.executable, "-m", "scheduler_sdk"]


async def aiomesos(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *AIOMESOS,
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_one_line_error(code: int, out: str, err: str, expect: str) -> None:
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert "Traceback" not in err and expect in lines[0], lines[0]


@pytest.mark.cgroups
async def test_run_agents_frameworks_tasks_tables_and_json(cluster: LocalCluster) -> None:
    m = cluster.master_address
    code, out, err = await aiomesos(
        "run", "--master", m, "--name", "hello", "--instances", "3", "--cpus", "0.1", "--mem", "16", "--", "echo", "hi"
    )
    assert code == 0, err
    assert out.count("TASK_FINISHED") == 3 and out.count("TASK_RUNNING") == 3
    code, out, err = await aiomesos("run", "--master", m, "--name", "bad", "--", "exit 3")
    assert code == 3, (out, err)
    assert "TASK_FAILED" in out and "exit code 3" in out
    code, out, err = await aiomesos(
        "run", "--master", m, "--name", "mixed", "--instances", "2", "--", 'test "$MESOS_TASK_ID" = mixed-0 || exit 5'
    )
    assert code == 5, (out, err)

    code, out, _ = await aiomesos("agents", "--master", m)
    assert code == 0
    agents = json.loads((await aiomesos("agents", "--master", m, "--json"))[1])
    assert len(agents) == 2 and all(a["active"] for a in agents)
    for a in agents:
        assert a["id"] in out and a["hostname"] in out
        assert a["resources"]["cpus"] == 2 and a["resources"]["mem"] == 1024
        assert a["resources"]["ports"] == [[31000, 32000]]

    code, out, _ = await aiomesos("frameworks", "--master", m, "--all")
    assert code == 0 and "hello" in out
    frameworks = json.loads((await aiomesos("frameworks", "--master", m, "--json", "--all"))[1])
    assert {f["name"] for f in frameworks} >= {"hello", "bad", "mixed"}
    assert all(f["state"] == "completed" for f in frameworks)

    tasks = json.loads((await aiomesos("tasks", "--master", m, "--json", "--all"))[1])
    hello = [t for t in tasks if t["name"].startswith("hello")]
    assert sorted(t["id"] for t in hello) == ["hello-0", "hello-1", "hello-2"]
    assert all(t["state"] == "TASK_FINISHED" and t["agent_id"] and t["exit_code"] == 0 for t in hello)
    assert all(t["resources"] == {"cpus": 0.1, "mem": 16} for t in hello)
    code, out, _ = await aiomesos("tasks", "--master", m, "--all")
    assert code == 0 and "hello-0" in out and "TASK_FINISHED" in out
    assert json.loads((await aiomesos("tasks", "--master", m, "--json"))[1]) == []


async def test_unreachable_master_is_one_line_and_exit_2() -> None:
    for args in (["agents"], ["tasks", "--json"], ["run", "--", "true"]):
        code, out, err = await aiomesos(args[0], "--master", "127.0.0.1:1", *args[1:])
        assert_one_line_error(code, out, err, "cannot reach the master at 127.0.0.1:1")


async def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, out, err = await aiomesos("agents", "--bogus")
    assert_one_line_error(code, out, err, "unrecognized arguments: --bogus")
    code, out, err = await aiomesos("frobnicate")
    assert_one_line_error(code, out, err, "invalid choice")
    code, out, err = await aiomesos("master", "--work-dir", str(tmp_path), "--bogus")
    assert_one_line_error(code, out, err, "--bogus")
    code, out, err = await aiomesos(
        "agent", "--master", "127.0.0.1:1", "--work-dir", str(tmp_path), "--resources", "cpus:abc"
    )
    assert_one_line_error(code, out, err, "malformed amount 'abc' for 'cpus'")
    code, out, err = await aiomesos(
        "agent", "--master", "127.0.0.1:1", "--work-dir", str(tmp_path), "--attributes", "zone"
    )
    assert_one_line_error(code, out, err, "malformed attribute")
    code, out, err = await aiomesos("run", "--master", "127.0.0.1:1", "--cpus", "-1", "--", "true")
    assert_one_line_error(code, out, err, "--cpus")
    code, out, err = await aiomesos("run", "--master", "127.0.0.1:1")
    assert_one_line_error(code, out, err, "no command given")
    code, out, err = await aiomesos("cluster", "up", "--agent-resources", "mem:lots")
    assert_one_line_error(code, out, err, "malformed amount")
    code, out, err = await aiomesos("agents", "--master", "")
    assert_one_line_error(code, out, err, "argument --master: master '': empty")
    code, out, err = await aiomesos("masters", "--master", "zk://z1:2181/mesos")
    assert_one_line_error(code, out, err, "unknown scheme 'zk'")
    code, out, err = await aiomesos("run", "--master", "m1:5050,m2", "--", "true")
    assert_one_line_error(code, out, err, "'m2' is not HOST:PORT")
    code, out, err = await aiomesos("cluster", "up", "--work-dir", "/proc/no/such/dir")
    assert_one_line_error(code, out, err, "--work-dir /proc/no/such/dir")
    code, out, err = await aiomesos("demo", "--agents", "0")
    assert_one_line_error(code, out, err, "--agents must be at least 1")
    # Values from the environment are checked like the command line's.
    code, out, err = await aiomesos("master", "--work-dir", str(tmp_path), env={"AIOMESOS_LOG_LEVEL": "verbose"})
    assert_one_line_error(code, out, err, "argument --log-level: invalid choice 'verbose'")
    code, out, err = await aiomesos("tasks", env={"AIOMESOS_MASTER": "nowhere"})
    assert_one_line_error(code, out, err, "'nowhere' is not HOST:PORT")
    code, out, err = await aiomesos("agent", "--work-dir", str(tmp_path), env={"AIOMESOS_MASTER": "etcd://"})
    assert_one_line_error(code, out, err, "no etcd endpoint")


async def test_a_work_dir_and_a_port_serve_one_master(tmp_path: Path) -> None:
    """A second master on a running master's work dir or port is refused with one line, not started beside it."""
    work = tmp_path / "m"
    proc = await asyncio.create_subprocess_exec(
        *AIOMESOS,
        "master",
        "--work-dir",
        str(work),
        "--ip",
        "127.0.0.1",
        "--port",
        "0",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        addr = await eventually(
            lambda: (work / "master.addr").exists() and (work / "master.addr").read_text().strip(),
            what="the first master's address file",
        )
        code, out, err = await aiomesos("master", "--work-dir", str(work), "--port", "0")
        assert_one_line_error(code, out, err, f"another master (pid {proc.pid}) is running with work dir {work}")
        port = addr.rsplit(":", 1)[1]
        code, out, err = await aiomesos(
            "master", "--work-dir", str(tmp_path / "m2"), "--ip", "127.0.0.1", "--port", port
        )
        assert_one_line_error(code, out, err, f"cannot listen on 127.0.0.1:{port}")
        code, out, err = await aiomesos(
            "master", "--work-dir", str(tmp_path / "m3"), "--ip", "192.0.2.1", "--port", "0"
        )
        assert_one_line_error(code, out, err, "--ip 192.0.2.1 without TLS would let anyone")
        code, out, err = await aiomesos(
            "master", "--work-dir", str(tmp_path / "m3"), "--ip", "192.0.2.1", "--port", "0", "--insecure"
        )
        assert_one_line_error(code, out, err, "cannot listen on 192.0.2.1:0")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0


@pytest.mark.cgroups
async def test_sigterm_tears_run_down_like_ctrl_c(cluster: LocalCluster) -> None:
    """`aiomesos run` stopped with SIGTERM kills its task and removes its framework before it exits (143)."""
    m = cluster.master_address
    proc = await asyncio.create_subprocess_exec(
        *AIOMESOS,
        "run",
        "--master",
        m,
        "--name",
        "long",
        "--",
        "sleep 600",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    async def running() -> bool:
        tasks = json.loads((await aiomesos("tasks", "--master", m, "--json"))[1])
        return any(t["id"] == "long" and t["state"] == "TASK_RUNNING" for t in tasks)

    await eventually(running, what="the task to run")
    proc.terminate()
    await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 143
    tasks = json.loads((await aiomesos("tasks", "--master", m, "--json", "--all"))[1])
    assert [t["state"] for t in tasks if t["id"] == "long"] == ["TASK_KILLED"]
    frameworks = json.loads((await aiomesos("frameworks", "--master", m, "--json", "--all"))[1])
    assert [f["state"] for f in frameworks if f["name"] == "long"] == ["completed"]


async def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["master", "--help"],
        ["agent", "--help"],
        ["run", "--help"],
        ["agents", "--help"],
        ["frameworks", "--help"],
        ["tasks", "--help"],
        ["cluster", "up", "--help"],
        ["demo", "--help"],
    ):
        code, out, err = await aiomesos(*args)
        assert code == 0, (args, err)
        assert "usage:" in out


async def test_daemon_flags_come_from_the_environment(tmp_path: Path) -> None:
    work = tmp_path / "m"
    proc = await asyncio.create_subprocess_exec(
        *AIOMESOS,
        "master",
        env={
            **os.environ,
            "AIOMESOS_WORK_DIR": str(work),
            "AIOMESOS_PORT": "0",
            "AIOMESOS_IP": "127.0.0.1",
            "AIOMESOS_LOG_FORMAT": "json",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        addr = await eventually(
            lambda: (work / "master.addr").exists() and (work / "master.addr").read_text().strip(),
            what="the master's address file in AIOMESOS_WORK_DIR",
        )
        assert addr.startswith("127.0.0.1:") and not addr.endswith(":5050")
        # A master without certificates: a plaintext client (no config) reaches it on loopback.
        code, out, _ = await aiomesos("agents", "--json", env={"AIOMESOS_MASTER": addr, "AIOMESOS_CONFIG": ""})
        assert code == 0 and json.loads(out) == []
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0
    first = json.loads(err.decode().splitlines()[0])  # JSON logs when not on a terminal
    assert first["event"] == "master started" and first["level"] == "info"


@pytest.mark.cgroups
async def test_run_says_why_a_task_waits(cluster: LocalCluster) -> None:
    """A task no agent can hold is not left waiting in silence: run names what each agent lacks."""
    code, out, err = await aiomesos(
        "run", "--master", cluster.master_address, "--cpus", "100", "--timeout", "3", "--", "true"
    )
    assert "aiomesos-run  waiting: no offered agent can take it yet: " in out, out
    assert out.count("cpus needs 100, has 2") == 2, out  # both agents, each with its shortfall
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (code, err)


async def test_a_work_dir_and_a_port_serve_one_agent(cluster: LocalCluster, tmp_path: Path) -> None:
    """A second agent on a running agent's work dir is refused before it touches that agent's tasks; one on a
    port in use is refused before it takes any cgroup."""
    running = cluster.agent_daemons[0]
    m = cluster.master_address
    assert running.process is not None
    code, out, err = await aiomesos("agent", "--master", m, "--work-dir", str(running.work_dir), "--port", "0")
    assert_one_line_error(code, out, err, f"another agent (pid {running.process.pid}) is running with work dir")
    port = (running.work_dir / "agent.addr").read_text().strip().rsplit(":", 1)[1]
    other = tmp_path / "other-agent"
    code, out, err = await aiomesos(
        "agent", "--master", m, "--work-dir", str(other), "--ip", "127.0.0.1", "--port", port
    )
    assert_one_line_error(code, out, err, f"cannot listen on 127.0.0.1:{port}")
    assert leftover_cgroups(other) == []
    assert running.alive


@pytest.mark.cgroups
async def test_an_agent_that_fails_to_start_leaves_nothing(tmp_path: Path) -> None:
    """A start that fails after the containerizer took its cgroups (here: the work dir's meta is a file) ends
    with one line, and the cgroups go with it."""
    work = tmp_path / "agent"
    work.mkdir()
    (work / "meta").write_text("not a directory")
    code, _, err = await aiomesos(
        "agent", "--master", "127.0.0.1:1", "--work-dir", str(work), "--port", "0", "--resources", "cpus:1;mem:64"
    )
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Not a directory" in err, (code, err)
    assert leftover_cgroups(work) == []
