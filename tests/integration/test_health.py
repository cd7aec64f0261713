"""HealthChecker against real processes and real sockets on loopback (ports from the OS).

Intervals are short (0.05 s); every outcome is awaited by polling with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import uvloop

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_agent.containerizer import Container
from mesos_agent.containerizer import _cgroups as cg
from mesos_agent.health import HealthChecker

from .test_containerizer import SKIP_REASON, MakeCzr, make_czr, spec

__all__ = ["make_czr"]  # the fixture, for the checks run inside a task's container

HC = tpb.HealthCheck
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C"}
FAST = dict(
    delay_seconds=0,
    interval_seconds=0.05,
    grace_period_seconds=0,
)


def timing(*, timeout: float = 2.0, failures: int = 3, **kw: float) -> dict[str, Any]:
    """Fast check settings (HealthCheck keyword arguments): no delay, 0.05 s interval, no grace period."""
    return {
        **FAST,
        "timeout_seconds": timeout,
        "consecutive_failures": failures,
        **kw,
    }


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Run:
    """A HealthChecker running in the background, with every callback recorded in order."""

    def __init__(
        self, check: tpb.HealthCheck, cwd: Path, env: dict[str, str] | None = None, container: Container | None = None
    ) -> None:
        self.calls: list[object] = []
        self.checker = HealthChecker(
            check,
            env=env if env is not None else ENV,
            cwd=cwd,
            launched_at=time.monotonic(),
            on_health=self.calls.append,
            on_kill=lambda message: self.calls.append(("kill", message)),
            container=container,
        )
        self.task = asyncio.get_running_loop().create_task(self.checker.run())

    @property
    def kills(self) -> list[str]:
        return [c[1] for c in self.calls if isinstance(c, tuple)]

    async def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        def check() -> bool:
            if self.task.done() and not predicate():
                self.task.result()  # surface an exception from the loop
                raise AssertionError(f"checker stopped before {what}: {self.calls}")
            return predicate()

        await until(check, what, timeout)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def runs() -> AsyncIterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        await run.stop()


# ---------------------------------------------------------------------- COMMAND
async def test_command_passes_then_fails_then_kill(tmp_path: Path, runs: list[Run]) -> None:
    (tmp_path / "ready").write_text("")
    # The task's environment and sandbox (cwd) are the check's: $MARKER is a path relative to the sandbox.
    check = HC(type=HC.COMMAND, command=rpb.CommandInfo(shell=True, value='test -f "$MARKER"'), **timing(failures=3))
    run = Run(check, tmp_path, env={**ENV, "MARKER": "ready"})
    runs.append(run)
    await run.wait(lambda: run.calls == [True], "healthy")
    checks_when_healthy = run.checker.checks_run
    await run.wait(lambda: run.checker.checks_run >= checks_when_healthy + 3, "more passing checks")
    assert run.calls == [True]  # one report per transition, not per check

    (tmp_path / "ready").unlink()
    await run.wait(lambda: bool(run.kills), "kill")
    await asyncio.wait_for(run.task, 1.0)  # the checker stops by itself after asking for the kill
    assert run.calls == [
        True,
        False,
        ("kill", "health check failed 3 times in a row: command 'test -f \"$MARKER\"' exited with status 1"),
    ]


async def test_command_argv_and_check_environment(tmp_path: Path, runs: list[Run]) -> None:
    (tmp_path / "flag").write_text("")
    command = rpb.CommandInfo(
        shell=False,
        value="/bin/sh",
        arguments=["sh", "-c", 'test "$(pwd)" = "$SANDBOX" && test "$EXTRA" = yes && test -f flag'],
        environment=rpb.Environment(variables=[rpb.Environment.Variable(name="EXTRA", value="yes")]),
    )
    run = Run(HC(type=HC.COMMAND, command=command, **timing()), tmp_path, env={**ENV, "SANDBOX": str(tmp_path)})
    runs.append(run)
    await run.wait(lambda: run.calls == [True], "healthy")


async def test_command_recovers_and_reports_each_transition(tmp_path: Path, runs: list[Run]) -> None:
    flag = tmp_path / "ok"
    flag.write_text("")
    check = HC(type=HC.COMMAND, command=rpb.CommandInfo(shell=True, value="test -f ok"), **timing(failures=1000))
    run = Run(check, tmp_path)
    runs.append(run)
    await run.wait(lambda: run.calls == [True], "healthy")
    flag.unlink()
    await run.wait(lambda: run.calls == [True, False], "unhealthy")
    flag.write_text("")
    await run.wait(lambda: run.calls == [True, False, True], "healthy again")
    assert run.kills == []


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _hanging_command_is_killed(tmp_path: Path) -> None:
    # The shell starts a background child and waits: the timeout must kill the whole process group.
    script = "sleep 60 & echo $! > child.pid; echo $$ > shell.pid; wait"
    check = HC(
        type=HC.COMMAND,
        command=rpb.CommandInfo(shell=True, value=script),
        **timing(timeout=0.3, failures=2),
    )
    run = Run(check, tmp_path)
    try:
        started = time.monotonic()
        await run.wait(lambda: bool(run.kills), "kill", timeout=5.0)
        elapsed = time.monotonic() - started
        assert run.calls == [
            False,
            ("kill", "health check failed 2 times in a row: command " + repr(script) + " timed out after 0.3s"),
        ]
        assert 0.6 <= elapsed < 3.0
        pids = [int((tmp_path / name).read_text()) for name in ("shell.pid", "child.pid")]
        await until(lambda: all(_gone(pid) for pid in pids), "the check's processes to end", timeout=3.0)
    finally:
        await run.stop()


async def test_command_that_hangs_is_killed_at_timeout(tmp_path: Path) -> None:
    await _hanging_command_is_killed(tmp_path)


def test_command_that_hangs_is_killed_at_timeout_under_uvloop(tmp_path: Path) -> None:
    uvloop.run(_hanging_command_is_killed(tmp_path))


async def test_cancelling_the_checker_kills_a_running_check(tmp_path: Path) -> None:
    check = HC(
        type=HC.COMMAND,
        command=rpb.CommandInfo(shell=True, value="echo $$ > shell.pid; exec sleep 60"),
        **timing(timeout=30),
    )
    run = Run(check, tmp_path)
    pid_file = tmp_path / "shell.pid"
    await run.wait(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"), "the check to start")
    pid = int(pid_file.read_text())
    assert not _gone(pid)
    await run.stop()
    await until(lambda: _gone(pid), "the check to be killed", timeout=3.0)
    assert run.calls == []


async def test_command_that_cannot_start_is_a_failure(tmp_path: Path, runs: list[Run]) -> None:
    command = rpb.CommandInfo(shell=False, value="/nonexistent/health-probe")
    run = Run(HC(type=HC.COMMAND, command=command, **timing(failures=1)), tmp_path)
    runs.append(run)
    await run.wait(lambda: bool(run.kills), "kill")
    assert "could not start" in run.kills[0]


# ---------------------------------------------------------------------- COMMAND, inside the task's container
in_a_container = [
    pytest.mark.cgroups,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv not installed"),
]


@pytest.mark.parametrize(
    "isolation", [pytest.param("auto", marks=in_a_container, id="cgroups"), pytest.param("posix", id="posix")]
)
async def test_command_check_runs_inside_the_task_container(
    tmp_path: Path, runs: list[Run], make_czr: MakeCzr, isolation: str
) -> None:
    """Like Mesos: the check is in the task's cgroups, runs as the task's user, with its environment."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (to run the task as nobody)")
    czr = make_czr(isolation=isolation)
    task_env = {**ENV, "TASK_VAR": "from-the-task"}
    task = await czr.launch(spec(tmp_path, "task", ["sleep", "30"], env=task_env, user="nobody"))
    sandbox = tmp_path / "task"
    sandbox.chmod(0o777)  # the check (as nobody) writes its findings there
    script = 'id -u > uid; cat /proc/self/cgroup > cgroup; echo "$TASK_VAR $EXTRA" > env'
    command = rpb.CommandInfo(
        shell=True,
        value=script,
        environment=rpb.Environment(variables=[rpb.Environment.Variable(name="EXTRA", value="check")]),
    )
    run = Run(HC(type=HC.COMMAND, command=command, **timing()), sandbox, env=task_env, container=task)
    runs.append(run)
    await run.wait(lambda: run.calls == [True], "healthy")
    assert (sandbox / "uid").read_text() == "65534\n"
    assert (sandbox / "env").read_text() == "from-the-task check\n"
    cgroups = (sandbox / "cgroup").read_text().splitlines()
    inside = [line for line in cgroups if line.endswith(f":/{czr.root}/task")]
    assert len(inside) == len(task.cgroup_paths), cgroups
    assert (task.cgroup_paths != []) == (isolation == "auto")
    assert not task.done


@pytest.mark.parametrize("isolation", [pytest.param("auto", marks=in_a_container, id="cgroups")])
async def test_command_check_inside_a_container_is_killed_at_timeout(
    tmp_path: Path, make_czr: MakeCzr, isolation: str
) -> None:
    czr = make_czr(isolation=isolation)
    task = await czr.launch(spec(tmp_path, "task", ["sleep", "30"], user="nobody"))
    procs = task.cgroup_paths[0] / "cgroup.procs"
    await until(lambda: len(cg.read_pids(procs)) == 1, "the task in its cgroup")
    alone = set(cg.read_pids(procs))
    script = "sleep 60 & sleep 60 & wait"
    check = HC(type=HC.COMMAND, command=rpb.CommandInfo(shell=True, value=script), **timing(timeout=1.0, failures=1))
    run = Run(check, tmp_path / "task", container=task)
    try:
        await run.wait(lambda: len(cg.read_pids(procs)) == len(alone) + 3, "the check's processes in the cgroup")
        await run.wait(lambda: bool(run.kills), "kill")
        assert run.kills == [f"health check failed 1 time in a row: command {script!r} timed out after 1s"]
        await until(lambda: set(cg.read_pids(procs)) == alone, "the check's processes to end", timeout=3.0)
        assert not task.done
    finally:
        await run.stop()


async def test_command_check_of_an_ended_container_is_a_failure(
    tmp_path: Path, runs: list[Run], make_czr: MakeCzr
) -> None:
    czr = make_czr(isolation="posix")
    task = await czr.launch(spec(tmp_path, "task", ["true"]))
    await task.wait()
    check = HC(type=HC.COMMAND, command=rpb.CommandInfo(shell=True, value="true"), **timing(failures=1))
    run = Run(check, tmp_path / "task", container=task)
    runs.append(run)
    await run.wait(lambda: bool(run.kills), "kill")
    assert "could not start" in run.kills[0] and "not running" in run.kills[0], run.kills


# ---------------------------------------------------------------------- HTTP
class TinyHTTP:
    """An HTTP/1.1 server on 127.0.0.1 that answers every request with `status` (or never, if `hang`)."""

    def __init__(self) -> None:
        self.status = 200
        self.hang = False
        self.paths: list[str] = []
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[Any]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)
        try:
            request_line = await reader.readline()
            while (await reader.readline()).strip():
                pass
            self.paths.append(request_line.decode().split()[1])
            if self.hang:
                await asyncio.sleep(60)
            writer.write(f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        except (ConnectionError, IndexError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def start(self, ssl_context: ssl.SSLContext | None = None, port: int = 0) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", port, ssl=ssl_context)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), 1.0)


@pytest.fixture
async def http_server() -> AsyncIterator[TinyHTTP]:
    server = TinyHTTP()
    yield server
    if server.server is not None:
        await server.close()


async def test_http_200_then_500(tmp_path: Path, runs: list[Run], http_server: TinyHTTP) -> None:
    port = await http_server.start()
    check = HC(type=HC.HTTP, http=HC.HTTPCheckInfo(port=port, path="/health"), **timing(failures=2))
    run = Run(check, tmp_path)
    runs.append(run)
    await run.wait(lambda: run.calls == [True], "healthy")
    assert set(http_server.paths) == {"/health"}
    http_server.status = 500
    await run.wait(lambda: bool(run.kills), "kill")
    assert run.calls == [
        True,
        False,
        ("kill", f"health check failed 2 times in a row: HTTP GET http://127.0.0.1:{port}/health returned 500"),
    ]


async def test_http_statuses_override_the_default_range(tmp_path: Path, runs: list[Run], http_server: TinyHTTP) -> None:
    port = await http_server.start()
    http_server.status = 503
    check = HC(type=HC.HTTP, http=HC.HTTPCheckInfo(port=port, statuses=[503]), **timing(failures=1))
    run = Run(check, tmp_path)
    runs.append(run)
    await run.wait(lambda: run.calls == [True], "healthy on 503")
    http_server.status = 200  # not in `statuses`
    await run.wait(lambda: bool(run.kills), "kill on 200")
    assert run.kills[0].endswith(f"HTTP GET http://127.0.0.1:{port}/ returned 200")


async def test_http_server_that_never_answers_times_out(tmp_path: Path, runs: list[Run], http_server: TinyHTTP) -> None:
    port = await http_server.start()
    http_server.hang = True
    run = Run(HC(type=HC.HTTP, http=HC.HTTPCheckInfo(port=port), **timing(timeout=0.2, failures=1)), tmp_path)
    runs.append(run)
    await run.wait(lambda: bool(run.kills), "kill")
    assert run.kills[0].endswith(f"HTTP GET http://127.0.0.1:{port}/ timed out after 0.2s")


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port held until the test ends: bound with SO_REUSEADDR and never listening, so that a connection
    to it is refused but while the test's own server listens on it (asyncio's servers reuse addresses too), and
    no daemon of another test (another pytest worker's: they bind port 0) takes it once that server is closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


async def test_http_connection_refused_is_a_failure(
    tmp_path: Path, runs: list[Run], http_server: TinyHTTP, held_port: int
) -> None:
    port = await http_server.start(port=held_port)
    await http_server.close()
    http_server.server = None
    run = Run(HC(type=HC.HTTP, http=HC.HTTPCheckInfo(port=port), **timing(failures=1)), tmp_path)
    runs.append(run)
    await run.wait(lambda: bool(run.kills), "kill")
    assert run.kills == [
        f"health check failed 1 time in a row: HTTP GET http://127.0.0.1:{port}/ failed: connection refused"
    ]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a test certificate")
async def test_https_with_a_self_signed_certificate(tmp_path: Path, runs: list[Run], http_server: TinyHTTP) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=example.invalid", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    port = await http_server.start(ctx)
    check = HC(type=HC.HTTP, http=HC.HTTPCheckInfo(scheme="https", port=port, path="/x"), **timing(failures=1))
    run = Run(check, tmp_path)
    runs.append(run)
    await run.wait(lambda: run.calls == [True], "healthy over TLS")
    http_server.status = 404
    await run.wait(lambda: bool(run.kills), "kill")
    assert run.kills[0].endswith(f"HTTP GET https://127.0.0.1:{port}/x returned 404")


# ---------------------------------------------------------------------- TCP
async def test_tcp_listening_then_closed(tmp_path: Path, runs: list[Run], held_port: int) -> None:
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    port = held_port
    server = await asyncio.start_server(accept, "127.0.0.1", port)
    try:
        run = Run(HC(type=HC.TCP, tcp=HC.TCPCheckInfo(port=port), **timing(failures=3)), tmp_path)
        runs.append(run)
        await run.wait(lambda: run.calls == [True], "healthy")
    finally:
        server.close()
        await server.wait_closed()
    await run.wait(lambda: bool(run.kills), "kill")
    assert run.calls[:2] == [True, False]
    assert run.kills == [
        f"health check failed 3 times in a row: TCP connect to 127.0.0.1:{port} failed: connection refused"
    ]


async def test_grace_period_ignores_early_failures(tmp_path: Path, runs: list[Run], held_port: int) -> None:
    # Nothing listens for the first part of the grace period; the task becomes healthy before it ends.
    port = held_port
    check = HC(
        type=HC.TCP,
        tcp=HC.TCPCheckInfo(port=port),
        **timing(failures=1, grace_period_seconds=5.0),
    )
    run = Run(check, tmp_path)
    runs.append(run)
    await run.wait(lambda: run.checker.checks_run >= 3, "some failing checks")
    assert run.calls == []  # ignored: within the grace period
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    await run.wait(lambda: run.calls == [True], "healthy")
    server.close()
    await server.wait_closed()
    # The first success ended the grace period: one failure now kills.
    await run.wait(lambda: bool(run.kills), "kill")
    assert run.calls[:2] == [True, False]


def test_no_leftover_children() -> None:
    """Run last in this module: no check process is left as a child of the test process."""
    leftovers = [p for p in psutil.Process(os.getpid()).children(recursive=True) if p.status() != "zombie"]
    assert leftovers == []
