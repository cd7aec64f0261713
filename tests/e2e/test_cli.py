"""The `aiomesos` command line against a real cluster: tables, --json, exit codes and one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler_sdk.cli.main import DAEMONS, main
from scheduler_sdk.local_cluster import LocalCluster, leftover_cgroups
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.resources import Resources
from tests.e2e.harness import concurrently, eventually
from tests.unit.scheduler_sdk.cli.render import assert_fits_and_nothing_is_cut, assert_ids_whole

pytestmark = [pytest.mark.e2e]
AIOMESOS = [sys.executable, "-m", "scheduler_sdk"]
CLI_ENV = {"COLUMNS": "200"}
MIB = 1 << 20


async def aiomesos(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str]:
    """`aiomesos ARGS` in a process of its own: its exit status, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        *AIOMESOS,
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **CLI_ENV, **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:  # timed out, or cancelled with the calls beside it: leave no process behind
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def aiomesos_here(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`aiomesos ARGS` by its `main` in this process (no Python start-up to pay): for what depends on the
    arguments alone. Each behaviour that depends on the process (exit status, one line on stderr) is also checked
    through `aiomesos` in a process of its own. Not for the daemons (`main` execs them) nor inside a running event
    loop (`main` runs its own)."""
    assert args[:1] not in [(d,) for d in DAEMONS], "main would exec the daemon in place of this process"
    out, err = io.StringIO(), io.StringIO()
    with _environ({**CLI_ENV, **(env or {})}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code
        else:
            raise AssertionError(f"aiomesos {args} returned instead of exiting")
    assert isinstance(code, int), code
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    """os.environ with `extra`, restored after (main itself may set variables: the client config's path)."""
    saved = dict(os.environ)
    os.environ.update(extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def cluster(module_cluster: LocalCluster) -> LocalCluster:
    """One cluster for the module: no test here kills, restarts or drains it, each names its own frameworks and
    tasks and leaves none running."""
    return module_cluster


def assert_one_line_error(code: int, out: str, err: str, expect: str) -> None:
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert "Traceback" not in err and expect in lines[0], lines[0]


@pytest.mark.cgroups
async def test_run_agents_frameworks_tasks_tables_and_json(cluster: LocalCluster) -> None:
    m = cluster.master_address
    # Four frameworks at once (they fit side by side: 0.3 + 0.5 + 1 + 0.5 cpus of 4); `oom` outgrows its memory.
    run = ("run", "--master", m)
    hello, bad, mixed, oom = await concurrently(
        aiomesos(*run, "--name", "hello", "--instances", "3", "--cpus", "0.1", "--mem", "16", "--", "echo", "hi"),
        aiomesos(*run, "--name", "bad", "--", "exit 3"),
        aiomesos(*run, "--name", "mixed", "--instances", "2", "--", 'test "$MESOS_TASK_ID" = mixed-0 || exit 5'),
        aiomesos(*run, "--name", "oom", "--mem", "32", "--", "head -c 300m /dev/zero | tail"),
    )
    code, out, err = hello
    assert code == 0, err
    assert out.count("TASK_FINISHED") == 3 and out.count("TASK_RUNNING") == 3
    code, out, err = bad
    assert code == 3, (out, err)
    assert "TASK_FAILED" in out and "exit code 3" in out
    code, out, err = mixed
    assert code == 5, (out, err)
    code, out, err = oom
    assert code != 0 and "TASK_FAILED" in out, (code, out, err)

    # The views, once all four have ended, read at once; the tables on a narrow terminal, with a reservation for
    # role eng on one agent.
    async with OperatorClient(m) as client:
        agent_id = (await client.agents()).agents[0].agent_info.id
        reserved = Resources.parse("cpus(eng):0.5;mem(eng):64")
        await client.reserve(agent_id, reserved)
        try:
            narrow = {"COLUMNS": "60"}
            (
                agents_table,
                agents_json,
                frameworks_table,
                frameworks_json,
                tasks_json,
                tasks_table,
                running,
            ) = await concurrently(
                aiomesos("agents", "--master", m, env=narrow),
                aiomesos("agents", "--master", m, "--json"),
                aiomesos("frameworks", "--master", m, "--all"),
                aiomesos("frameworks", "--master", m, "--json", "--all"),
                aiomesos("tasks", "--master", m, "--json", "--all"),
                aiomesos("tasks", "--master", m, "--all", env=narrow),
                aiomesos("tasks", "--master", m, "--json"),
            )
        finally:
            await client.unreserve(agent_id, reserved)
    code, out, _ = agents_table
    assert code == 0
    assert_fits_and_nothing_is_cut(out, 60)
    agents = json.loads(agents_json[1])
    assert len(agents) == 2 and all(a["active"] for a in agents)
    for a in agents:
        assert_ids_whole(out, [a["id"], a["hostname"]])
        assert a["resources"]["cpus"] == 2 and a["resources"]["mem"] == 1024  # reserved or not, the agent's
    assert [a["reserved"] for a in agents] == [{"eng": {"cpus": 0.5, "mem": 64}}, {}]
    assert "eng: cpus=0.5, mem=64" in out
    # two local agents share the host: each has its own half of the ports range
    assert sorted(a["resources"]["ports"] for a in agents) == [[[31000, 31499]], [[31500, 31999]]]

    code, out, _ = frameworks_table
    assert code == 0 and "hello" in out
    frameworks = json.loads(frameworks_json[1])
    assert {f["name"] for f in frameworks} >= {"hello", "bad", "mixed"}
    assert all(f["state"] == "completed" for f in frameworks if f["name"] in {"hello", "bad", "mixed"})

    tasks = json.loads(tasks_json[1])
    hello_tasks = [t for t in tasks if t["name"].startswith("hello")]
    assert sorted(t["id"] for t in hello_tasks) == ["hello-0", "hello-1", "hello-2"]
    assert all(t["state"] == "TASK_FINISHED" and t["agent_id"] and t["exit_code"] == 0 for t in hello_tasks)
    assert all(t["resources"] == {"cpus": 0.1, "mem": 16} for t in hello_tasks)
    assert all(t["reason"] is None for t in hello_tasks)
    [hog] = [t for t in tasks if t["name"] == "oom"]
    assert hog["state"] == "TASK_FAILED" and hog["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY", hog
    code, out, _ = tasks_table
    assert code == 0 and "TASK_FINISHED" in out
    assert_fits_and_nothing_is_cut(out, 60)
    assert_ids_whole(out, [t[key] for t in tasks for key in ("id", "framework_id", "agent_id")])
    assert json.loads(running[1]) == []


async def test_unreachable_master_is_one_line_and_exit_2() -> None:
    all_args = (["agents"], ["tasks", "--json"], ["run", "--", "true"])
    answers = await concurrently(*(aiomesos(args[0], "--master", "127.0.0.1:1", *args[1:]) for args in all_args))
    for code, out, err in answers:
        assert_one_line_error(code, out, err, "cannot reach the master at 127.0.0.1:1")


async def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """In processes of their own: the daemons' flags (the CLI execs them), and one of each way the CLI itself
    refuses (a flag argparse rejects, a check in a command, a value from the environment). Each daemon has a work
    dir of its own, and the agents port 0: the first to lock a shared dir or port would refuse the others."""

    def agent(work: str, *flags: str) -> tuple[str, ...]:
        return ("agent", "--work-dir", str(tmp_path / work), "--port", "0", *flags)

    cases = [
        (("agents", "--bogus"), {}, "unrecognized arguments: --bogus"),
        (("master", "--work-dir", str(tmp_path / "m1"), "--bogus"), {}, "--bogus"),
        (agent("a1", "--master", "127.0.0.1:1", "--resources", "cpus:abc"), {}, "malformed amount 'abc' for 'cpus'"),
        (agent("a2", "--master", "127.0.0.1:1", "--attributes", "zone"), {}, "malformed attribute"),
        (("run", "--master", "127.0.0.1:1"), {}, "no command given"),
        # Values from the environment are checked like the command line's.
        (
            ("master", "--work-dir", str(tmp_path / "m2")),
            {"AIOMESOS_LOG_LEVEL": "verbose"},
            "argument --log-level: invalid choice 'verbose'",
        ),
        (("tasks",), {"AIOMESOS_MASTER": "nowhere"}, "'nowhere' is not HOST:PORT"),
        (agent("a3"), {"AIOMESOS_MASTER": "etcd://"}, "no etcd endpoint"),
    ]
    answers = await concurrently(*(aiomesos(*args, env=env) for args, env, _ in cases))
    for (code, out, err), (_, _, expect) in zip(answers, cases, strict=True):
        assert_one_line_error(code, out, err, expect)


def test_bad_input_to_the_cli_is_one_line_and_exit_2() -> None:
    """The CLI's own checks, by its main in this test's process (the process-level behaviour of each kind of
    refusal is checked in processes of their own above)."""
    cases = [
        (("frobnicate",), {}, "invalid choice"),
        (("run", "--master", "127.0.0.1:1", "--cpus", "-1", "--", "true"), {}, "--cpus"),
        (("cluster", "up", "--agent-resources", "mem:lots"), {}, "malformed amount"),
        (("agents", "--master", ""), {}, "argument --master: master '': empty"),
        (("masters", "--master", "zk://z1:2181/mesos"), {}, "unknown scheme 'zk'"),
        (("run", "--master", "m1:5050,m2", "--", "true"), {}, "'m2' is not HOST:PORT"),
        (("cluster", "up", "--work-dir", "/proc/no/such/dir"), {}, "--work-dir /proc/no/such/dir"),
        (("demo", "--agents", "0"), {}, "--agents must be at least 1"),
    ]
    for args, env, expect in cases:
        code, out, err = aiomesos_here(*args, env=env)
        assert_one_line_error(code, out, err, expect)


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
        port = addr.rsplit(":", 1)[1]
        # Four refusals at once, each with a work dir of its own (but the first: the running master's).
        same_dir, same_port, no_tls, no_such_ip = await concurrently(
            aiomesos("master", "--work-dir", str(work), "--port", "0"),
            aiomesos("master", "--work-dir", str(tmp_path / "m2"), "--ip", "127.0.0.1", "--port", port),
            aiomesos("master", "--work-dir", str(tmp_path / "m3"), "--ip", "192.0.2.1", "--port", "0"),
            aiomesos("master", "--work-dir", str(tmp_path / "m4"), "--ip", "192.0.2.1", "--port", "0", "--insecure"),
        )
        assert_one_line_error(*same_dir, f"another master (pid {proc.pid}) is running with work dir {work}")
        assert_one_line_error(*same_port, f"cannot listen on 127.0.0.1:{port}")
        assert_one_line_error(*no_tls, "--ip 192.0.2.1 without TLS would let anyone")
        assert_one_line_error(*no_such_ip, "cannot listen on 192.0.2.1:0")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0


@pytest.mark.cgroups
async def test_top_shows_disk_and_sigterm_tears_run_down_like_ctrl_c(cluster: LocalCluster) -> None:
    """`top` shows what a running task's sandbox holds against its disk limit; `aiomesos run` stopped with
    SIGTERM kills its task and removes its framework before it exits (143)."""
    m = cluster.master_address
    blob = "head -c 3145728 /dev/zero > blob.part && mv blob.part blob && exec sleep 600"
    proc = await asyncio.create_subprocess_exec(
        *AIOMESOS,
        "run",
        "--master",
        m,
        "--name",
        "long",
        "--disk",
        "12",
        "--",
        blob,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def written() -> bool:
        pattern = "agents/*/frameworks/*/executors/long/runs/latest/blob"
        return any(any(d.work_dir.glob(pattern)) for d in cluster.agent_daemons)

    await eventually(written, what="the task to write its file")
    code, out, err = await aiomesos("top", "--once", "--json", "--interval", "0.1", "--master", m)
    assert code == 0, err
    [row] = [r for r in json.loads(out) if r["task_id"] == "long"]
    assert 3 * MIB <= row["disk_used_bytes"] < 12 * MIB and row["disk_limit_bytes"] == 12 * MIB, row
    proc.terminate()
    await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 143
    tasks_json, frameworks_json = await concurrently(
        aiomesos("tasks", "--master", m, "--json", "--all"), aiomesos("frameworks", "--master", m, "--json", "--all")
    )
    tasks = json.loads(tasks_json[1])
    assert [t["state"] for t in tasks if t["id"] == "long"] == ["TASK_KILLED"]
    frameworks = json.loads(frameworks_json[1])
    assert [f["state"] for f in frameworks if f["name"] == "long"] == ["completed"]


async def test_every_command_has_help() -> None:
    """The daemons' help (the CLI execs them) and the CLI's own, each in a process of its own: exit 0."""
    answers = await concurrently(aiomesos("--help"), aiomesos("master", "--help"), aiomesos("agent", "--help"))
    for code, out, err in answers:
        assert code == 0, err
        assert "usage:" in out


def test_every_cli_command_has_help() -> None:
    for args in (
        ["--help"],
        ["run", "--help"],
        ["agents", "--help"],
        ["frameworks", "--help"],
        ["tasks", "--help"],
        ["cluster", "up", "--help"],
        ["demo", "--help"],
    ):
        code, out, err = aiomesos_here(*args)
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
    port = (running.work_dir / "agent.addr").read_text().strip().rsplit(":", 1)[1]
    other = tmp_path / "other-agent"
    same_dir, same_port = await concurrently(
        aiomesos("agent", "--master", m, "--work-dir", str(running.work_dir), "--port", "0"),
        aiomesos("agent", "--master", m, "--work-dir", str(other), "--ip", "127.0.0.1", "--port", port),
    )
    assert_one_line_error(*same_dir, f"another agent (pid {running.process.pid}) is running with work dir")
    assert_one_line_error(*same_port, f"cannot listen on 127.0.0.1:{port}")
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


@pytest.mark.cgroups
async def test_demo_runs_and_removes_its_temporary_work_dir(tmp_path: Path) -> None:
    """`aiomesos demo` runs its job on a cluster of its own, stops it, and leaves no work dir behind (the
    sandboxes in it are the tasks' user's)."""
    code, out, err = await aiomesos("demo", "--agents", "1", "--tasks", "2", env={"TMPDIR": str(tmp_path)}, timeout=90)
    assert code == 0, (out, err)
    assert "2/2 tasks finished" in out and "no process or cgroup left behind" in out
    assert list(tmp_path.iterdir()) == [], "the demo's work dir is left"
