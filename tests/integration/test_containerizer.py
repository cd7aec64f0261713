"""Containerizer against real cgroups and real processes.

The cgroup tests need root and a usable cgroup v1 or v2 hierarchy; they are
skipped with the reason otherwise.  Each test works under its own root
``aiomesos-test/<uuid>``; the fixture always shuts its containerizers down and
checks that no cgroup dir of that root is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import stat
import struct
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import psutil
import pytest
import uvloop

from mesos_agent.containerizer import (
    LAUNCH_FAILED_STATUS,
    Containerizer,
    ContainerizerError,
    LaunchError,
    LaunchSpec,
)
from mesos_agent.containerizer import _cgroups as cg
from mesos_agent.containerizer import _containerizer as czr_module

PY = sys.executable
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C"}
TEST_PARENT = "aiomesos-test"
MiB = 1024 * 1024


def _cgroup_mounts() -> list[Path]:
    """Every cgroup / cgroup2 mount point, read independently of the module under test."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[:1] in (["cgroup"], ["cgroup2"]):
                mounts.append(Path(left.split()[4]))
    return mounts


def _cgroups_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for cgroups"
    probe = Containerizer(f"{TEST_PARENT}/probe-{uuid.uuid4().hex[:8]}")
    try:
        if probe.cgroups_version is None:
            return f"cgroups unavailable: {probe.warning}"
        return None
    finally:
        asyncio.run(probe.shutdown())


SKIP_REASON = _cgroups_skip_reason()
needs_cgroups = [
    pytest.mark.cgroups,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]


@pytest.fixture(scope="module", autouse=True)
def _remove_test_parent() -> Any:
    yield
    for m in _cgroup_mounts():
        with contextlib.suppress(OSError):
            os.rmdir(m / TEST_PARENT)


MakeCzr = Callable[..., Containerizer]


@pytest.fixture
async def make_czr() -> AsyncIterator[MakeCzr]:
    made: list[tuple[Containerizer, str]] = []

    def make(root: str | None = None, **kwargs: Any) -> Containerizer:
        root = root or f"{TEST_PARENT}/{uuid.uuid4().hex[:12]}"
        czr = Containerizer(root, memory_poll_interval=0.1, **kwargs)
        made.append((czr, root))
        return czr

    try:
        yield make
    finally:
        for czr, _root in made:
            await czr.shutdown()
        for czr, root in made:
            assert czr.containers() == []
            left = [m / root for m in _cgroup_mounts() if (m / root).exists()]
            assert left == [], f"cgroup dirs left behind: {left}"


def spec(tmp_path: Path, cid: str, argv: list[str], **kwargs: Any) -> LaunchSpec:
    sandbox = tmp_path / cid
    sandbox.mkdir()
    env = kwargs.pop("env", ENV)
    return LaunchSpec(
        container_id=cid,
        argv=argv,
        env=env,
        cwd=sandbox,
        stdout_path=sandbox / "stdout",
        stderr_path=sandbox / "stderr",
        **kwargs,
    )


async def poll(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Wait until cond() is truthy (checked every 10 ms), failing after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie (the host's init may not reap orphans)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize(
    "isolation", [pytest.param("auto", marks=needs_cgroups, id="cgroups"), pytest.param("posix", id="posix")]
)
async def test_exit_codes_signal_output_env_cwd(make_czr: MakeCzr, tmp_path: Path, isolation: str) -> None:
    czr = make_czr(isolation=isolation)
    script = 'echo "out-$FOO"; echo err-line >&2; pwd; exit 3'
    c3 = await czr.launch(spec(tmp_path, "three", ["/bin/sh", "-c", script], env={**ENV, "FOO": "bar"}))
    c0 = await czr.launch(spec(tmp_path, "zero", ["true"]))
    c9 = await czr.launch(spec(tmp_path, "nine", ["/bin/sh", "-c", "kill -9 $$"]))
    cg_ = await czr.launch(spec(tmp_path, "cgroup", ["cat", "/proc/self/cgroup"]))
    assert {c.container_id for c in czr.containers()} <= {"three", "zero", "nine", "cgroup"}

    t3, t0, t9, tc = await asyncio.gather(c3.wait(), c0.wait(), c9.wait(), cg_.wait())
    assert (t3.exit_code, t3.signal, t3.oom_killed, t3.message) == (3, None, False, "exited with status 3")
    assert (t0.exit_code, t0.signal, t0.message) == (0, None, "exited with status 0")
    assert (t9.exit_code, t9.signal, t9.message) == (None, 9, "killed by signal 9")
    assert await c3.wait() == t3  # idempotent
    assert read(tmp_path / "three" / "stdout") == f"out-bar\n{tmp_path / 'three'}\n"
    assert read(tmp_path / "three" / "stderr") == "err-line\n"
    assert tc.exit_code == 0
    if isolation == "posix":
        assert cg_.cgroup_paths == []
    else:
        # The task's own process was inside every cgroup of the container when it ran.
        lines = read(tmp_path / "cgroup" / "stdout").splitlines()
        inside = [line for line in lines if line.endswith(f":/{czr.root}/cgroup")]
        assert cg_.cgroup_paths and len(inside) >= len(cg_.cgroup_paths), lines
    for c in (c3, c0, c9, cg_):
        assert all(not p.exists() for p in c.cgroup_paths)
    assert czr.containers() == []


@pytest.mark.parametrize(
    "isolation", [pytest.param("auto", marks=needs_cgroups, id="cgroups"), pytest.param("posix", id="posix")]
)
async def test_stats_and_leftover_children_killed(make_czr: MakeCzr, tmp_path: Path, isolation: str) -> None:
    czr = make_czr(isolation=isolation)
    # The main process exits at once, leaving a background child behind: it must die with the task.
    leaver = await czr.launch(spec(tmp_path, "leaver", ["/bin/sh", "-c", "sleep 30 & echo $!"]))
    sleeper = await czr.launch(spec(tmp_path, "sleeper", ["sleep", "30"], cpus=0.5, mem_mb=64))

    t = await leaver.wait()
    assert t.exit_code == 0
    child = int(read(tmp_path / "leaver" / "stdout"))
    await poll(lambda: gone(child), what="the leftover child to die")

    stats = await poll(lambda: (s := sleeper.stats()) and s.get("processes", 0) >= 1 and s, what="stats")
    assert {"cpus_user_time_secs", "cpus_system_time_secs", "mem_rss_bytes", "processes"} <= set(stats)
    assert stats["mem_limit_bytes"] == 64 * MiB
    assert stats["cpus_limit"] == 0.5
    await sleeper.kill(0)
    t = await sleeper.wait()
    assert (t.exit_code, t.signal, t.oom_killed) == (None, signal.SIGKILL, False)
    assert sleeper.stats() == {}


# --------------------------------------------------------------------------- memory


@pytest.mark.cgroups
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_memory_bomb_is_oom_killed_and_neighbour_survives(make_czr: MakeCzr, tmp_path: Path) -> None:
    czr = make_czr()
    if "cgroups/mem" not in czr.isolators:
        pytest.skip("no memory cgroup controller")
    bomb_argv = [PY, "-c", "a = bytearray(200 * 1024 * 1024); import time; time.sleep(5)"]
    bomb = await czr.launch(spec(tmp_path, "bomb", bomb_argv, mem_mb=64))
    # The neighbour lives until the bomb's cgroup is gone, then finishes normally.
    watch = bomb.cgroup_paths[0]
    neighbour_argv = ["/bin/sh", "-c", f"while [ -d '{watch}' ]; do sleep 0.02; done; echo neighbour-ok"]
    neighbour = await czr.launch(spec(tmp_path, "neighbour", neighbour_argv, mem_mb=64))

    t = await asyncio.wait_for(bomb.wait(), 10)
    assert t.oom_killed is True
    assert t.signal == signal.SIGKILL and t.exit_code is None
    assert t.message == "memory limit 64 MiB exceeded"
    assert not neighbour.done
    tn = await asyncio.wait_for(neighbour.wait(), 10)
    assert (tn.exit_code, tn.oom_killed) == (0, False)
    assert read(tmp_path / "neighbour" / "stdout") == "neighbour-ok\n"


@pytest.mark.cgroups
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_child_oom_kills_the_whole_container(make_czr: MakeCzr, tmp_path: Path) -> None:
    czr = make_czr()
    if "cgroups/mem" not in czr.isolators:
        pytest.skip("no memory cgroup controller")
    script = f'"{PY}" -c "a = bytearray(200 << 20)"; echo survived; sleep 30'
    started = time.monotonic()
    c = await czr.launch(spec(tmp_path, "parent", ["/bin/sh", "-c", script], mem_mb=64))
    t = await asyncio.wait_for(c.wait(), 10)
    assert time.monotonic() - started < 5
    assert t.oom_killed is True
    assert t.message == "memory limit 64 MiB exceeded"
    assert t.signal == signal.SIGKILL
    assert all(not p.exists() for p in c.cgroup_paths)


# --------------------------------------------------------------------------- pids


FORKER = """
import subprocess, sys, time
procs, failed = [], 0
for _ in range(100):
    try:
        procs.append(subprocess.Popen(["sleep", "30"]))
    except OSError:
        failed += 1
print(len(procs), failed, *[p.pid for p in procs], flush=True)
time.sleep(30)
"""


@pytest.mark.cgroups
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_fork_bomb_is_bounded_by_pids_max(make_czr: MakeCzr, tmp_path: Path) -> None:
    czr = make_czr(max_task_processes=32)
    if "cgroups/pids" not in czr.isolators:
        pytest.skip("no pids cgroup controller")
    bomb = await czr.launch(spec(tmp_path, "forker", [PY, "-c", FORKER]))
    line = await poll(lambda: read(tmp_path / "forker" / "stdout"), what="the forker's report")
    started, failed, *pids = map(int, line.split())
    assert started < 32 and failed > 0 and started + failed == 100
    assert bomb.stats()["processes"] <= 32

    # The machine and the other tasks are fine meanwhile.
    other = await czr.launch(spec(tmp_path, "other", ["/bin/sh", "-c", "echo fine"]))
    assert (await other.wait()).exit_code == 0
    assert read(tmp_path / "other" / "stdout") == "fine\n"

    await bomb.kill(0)
    assert (await bomb.wait()).signal == signal.SIGKILL
    await poll(lambda: all(gone(p) for p in pids), what="every forked sleep to die")
    assert all(not p.exists() for p in bomb.cgroup_paths)

    # The shell variant: the shell fails to fork past the limit and exits; its leftovers are killed.
    loop = "for i in $(seq 100); do sleep 5 & done; wait"
    sh = await czr.launch(spec(tmp_path, "shell-bomb", ["/bin/sh", "-c", loop]))
    t = await asyncio.wait_for(sh.wait(), 10)
    assert t.exit_code not in (None, 0), t
    assert "fork" in read(tmp_path / "shell-bomb" / "stderr").lower()
    assert all(not p.exists() for p in sh.cgroup_paths)


# --------------------------------------------------------------------------- kill

READY_THEN_SLEEP = "\nprint('ready', flush=True)\ntime.sleep(60)"
TERM_EXITS = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(7))" + READY_THEN_SLEEP
TERM_IGNORED = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)" + READY_THEN_SLEEP


@pytest.mark.parametrize(
    "isolation", [pytest.param("auto", marks=needs_cgroups, id="cgroups"), pytest.param("posix", id="posix")]
)
async def test_kill_with_grace(make_czr: MakeCzr, tmp_path: Path, isolation: str) -> None:
    czr = make_czr(isolation=isolation)
    polite = await czr.launch(spec(tmp_path, "polite", [PY, "-c", TERM_EXITS]))
    stubborn = await czr.launch(spec(tmp_path, "stubborn", [PY, "-c", TERM_IGNORED]))
    for name in ("polite", "stubborn"):
        await poll(lambda n=name: read(tmp_path / n / "stdout") == "ready\n", what=f"{name} ready")

    async def timed_kill(c: Any, grace: float) -> float:
        t0 = time.monotonic()
        await c.kill(grace)
        return time.monotonic() - t0

    polite_s, stubborn_s = await asyncio.gather(timed_kill(polite, 10.0), timed_kill(stubborn, 0.5))
    tp, ts = await polite.wait(), await stubborn.wait()
    assert (tp.exit_code, tp.signal, tp.message) == (7, None, "exited with status 7")
    assert polite_s < 3.0
    assert (ts.exit_code, ts.signal) == (None, signal.SIGKILL)
    assert 0.45 <= stubborn_s < 2.0
    await polite.kill(1.0)  # already over: returns at once
    assert gone(polite.pid) and gone(stubborn.pid)


# --------------------------------------------------------------------------- orphans


@pytest.mark.cgroups
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_cleanup_orphans_of_a_crashed_agent(make_czr: MakeCzr, tmp_path: Path) -> None:
    root = f"{TEST_PARENT}/{uuid.uuid4().hex[:12]}"
    crashed = make_czr(root)
    c = await crashed.launch(spec(tmp_path, "orphan", ["/bin/sh", "-c", "sleep 30 & echo $!; sleep 30"]))
    child = int(await poll(lambda: read(tmp_path / "orphan" / "stdout").strip(), what="child pid"))
    # The "crashed" agent never calls shutdown(); a new one starts on the same root.
    fresh = make_czr(root)
    assert fresh.cleanup_orphans() == ["orphan"]
    assert all(not p.exists() for p in c.cgroup_paths)
    await poll(lambda: gone(c.pid) and gone(child), what="orphan processes to die")
    assert fresh.cleanup_orphans() == []
    # Let the old containerizer's reaper finish (it finds the cgroups already gone).
    t = await asyncio.wait_for(c.wait(), 5)
    assert t.signal == signal.SIGKILL


# --------------------------------------------------------------------------- configuration


async def test_posix_isolation_and_fallback(make_czr: MakeCzr, tmp_path: Path) -> None:
    posix = make_czr(isolation="posix")
    assert posix.isolators == ["posix/cpu", "posix/mem"]
    assert posix.cgroups_version is None and posix.warning is None

    fallback = make_czr(cgroups_root_v1=tmp_path / "no-cgroups-here")
    assert fallback.cgroups_version is None
    assert fallback.isolators == ["posix/cpu", "posix/mem", "disk/du"]
    assert fallback.warning and "\n" not in fallback.warning and "posix" in fallback.warning
    c = await fallback.launch(spec(tmp_path, "fb", ["/bin/sh", "-c", "exit 5"], cpus=1, mem_mb=32))
    assert c.cgroup_paths == []
    assert (await c.wait()).exit_code == 5


def test_bogus_isolation_is_rejected() -> None:
    with pytest.raises(ValueError, match="bogus"):
        Containerizer("aiomesos-test/never", isolation="bogus")
    with pytest.raises(ValueError, match="cgroups/nope"):
        Containerizer("aiomesos-test/never", isolation="cgroups/cpu,cgroups/nope")


async def test_launch_errors(make_czr: MakeCzr, tmp_path: Path) -> None:
    czr = make_czr()
    c = await czr.launch(spec(tmp_path, "dup", ["sleep", "30"]))
    with pytest.raises(LaunchError, match="already exists"):
        await czr.launch(replace(spec(tmp_path, "other", ["true"]), container_id="dup"))
    missing = LaunchSpec("nocwd", ["true"], ENV, tmp_path / "missing", tmp_path / "o", tmp_path / "e")
    with pytest.raises(LaunchError, match="not a directory"):
        await czr.launch(missing)
    with pytest.raises(LaunchError, match="path component"):
        await czr.launch(replace(spec(tmp_path, "slash", ["true"]), container_id="a/b"))
    with pytest.raises(LaunchError, match="unknown user"):
        await czr.launch(spec(tmp_path, "nouser", ["true"], user="no-such-user-xyz"))
    await c.kill(0)
    await czr.shutdown()
    with pytest.raises(LaunchError, match="shut down"):
        await czr.launch(spec(tmp_path, "late", ["true"]))


@pytest.mark.cgroups
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_wrapper_failing_to_enter_cgroups_is_reported(
    make_czr: MakeCzr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    czr = make_czr()
    backend = czr._backend
    assert backend is not None
    create = backend.create

    def create_with_a_bad_path(s: LaunchSpec) -> list[Path]:
        return [*create(s), tmp_path / "not-a-cgroup"]

    monkeypatch.setattr(backend, "create", create_with_a_bad_path)
    c = await czr.launch(spec(tmp_path, "nojoin", ["/bin/sh", "-c", "echo ran"]))
    t = await c.wait()
    assert t.exit_code == LAUNCH_FAILED_STATUS
    assert t.message.startswith("launch failed:") and "cgroups" in t.message
    assert read(tmp_path / "nojoin" / "stdout") == ""  # the task's command never ran
    assert all(not p.exists() for p in c.cgroup_paths[:-1])


@pytest.mark.cgroups
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv not installed")
async def test_run_as_another_user(make_czr: MakeCzr, tmp_path: Path) -> None:
    czr = make_czr()
    c = await czr.launch(spec(tmp_path, "nobody", ["/bin/sh", "-c", "id -u; cat /proc/self/cgroup"], user="nobody"))
    t = await c.wait()
    out = read(tmp_path / "nobody" / "stdout")
    assert t.exit_code == 0, read(tmp_path / "nobody" / "stderr")
    assert out.splitlines()[0] == "65534"
    assert f"/{czr.root}/nobody" in out


# --------------------------------------------------------------------------- cpu

SPIN = "while True: pass"
CFS_WINDOW = 5.0  # seconds of cgroup cpu time per measurement (0.494 / 0.503 / 0.503 core measured over 5 s)
CFS_TRIES = 4  # windows measured at most, while other work starves the loop below its cap


def cgroup_cpu(czr: Containerizer, c: Any) -> tuple[float, int, int]:
    """(cpu seconds used, nr_periods, nr_throttled) of the container, from its own cgroup files."""
    backend = czr._backend
    assert backend is not None
    if backend.version == 1:
        cpu = c.cgroup_paths[backend._index["cpu"]]
        used = int(read(c.cgroup_paths[backend._index["cpuacct"]] / "cpuacct.usage")) / 1e9
    else:
        cpu = c.cgroup_paths[0]
    stat_ = dict(line.split() for line in read(cpu / "cpu.stat").splitlines())
    if backend.version == 2:
        used = int(stat_["usage_usec"]) / 1e6
    return used, int(stat_["nr_periods"]), int(stat_["nr_throttled"])


@pytest.mark.cgroups
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_cfs_quota_caps_a_busy_loop(make_czr: MakeCzr, tmp_path: Path) -> None:
    """A busy loop with cpus 0.5 under the CFS cap uses 0.5 core +- 10 %, measured by its cgroup over 5 s.

    More than 0.55 fails at once (no other load can raise the loop's share).  Less than 0.45 fails when the
    loop was throttled in nearly every period of the window (its quota alone held it back); otherwise the box
    was too busy to give it even half a core (other work outweighing its cpu shares) and the next window is
    measured, up to CFS_TRIES."""
    czr = make_czr(enable_cfs=True)
    if not {"cgroups/cpu", "cgroups/cpuacct"} <= set(czr.isolators):
        pytest.skip("no cpu / cpuacct cgroup controller")
    c = await czr.launch(spec(tmp_path, "busy", [PY, "-c", SPIN], cpus=0.5))
    stats = await poll(
        lambda: (s := c.stats()) and s.get("cpus_nr_throttled", 0) > 0 and s, what="the task to be throttled"
    )
    assert stats["cpus_limit"] == 0.5
    windows = []
    for _ in range(CFS_TRIES):
        t0, (used0, periods0, throttled0) = time.monotonic(), cgroup_cpu(czr, c)
        await poll(lambda t0=t0: time.monotonic() - t0 >= CFS_WINDOW, timeout=CFS_WINDOW + 5, what="the window")
        elapsed, (used1, periods1, throttled1) = time.monotonic() - t0, cgroup_cpu(czr, c)
        ratio, periods, throttled = round((used1 - used0) / elapsed, 3), periods1 - periods0, throttled1 - throttled0
        windows.append((ratio, periods, throttled))
        # Over the cap is never the box's fault; under it is, unless the loop was held back by its quota alone.
        if ratio >= 0.45 or throttled >= 0.9 * periods:
            break
    else:
        pytest.fail(f"the box was too busy to give the loop its half core in any window: {windows}")
    assert 0.45 <= ratio <= 0.55, windows
    assert throttled > 0, windows  # the cap, not a lack of work, held it there
    assert not c.done
    await c.kill(0)


@pytest.mark.cgroups
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_without_cfs_the_quota_is_unlimited_but_shares_are_set(make_czr: MakeCzr, tmp_path: Path) -> None:
    """--no-cgroups-cfs: cpus only weigh the task against the others (shares), they cap nothing."""
    czr = make_czr(enable_cfs=False)
    if "cgroups/cpu" not in czr.isolators:
        pytest.skip("no cpu cgroup controller")
    backend = czr._backend
    assert backend is not None
    c = await czr.launch(spec(tmp_path, "uncapped", ["sleep", "30"], cpus=0.5))
    if backend.version == 1:
        cpu = c.cgroup_paths[backend._index["cpu"]]
        assert read(cpu / "cpu.cfs_quota_us").strip() == "-1"
        assert read(cpu / "cpu.shares").strip() == "512"
    else:
        cpu = c.cgroup_paths[0]
        assert read(cpu / "cpu.max").split()[0] == "max"
        assert read(cpu / "cpu.weight").strip() == str(1 + (510 * 9999) // 262142)
    capped = make_czr(enable_cfs=True)
    d = await capped.launch(spec(tmp_path, "capped", ["sleep", "30"], cpus=0.5))
    quota = d.cgroup_paths[backend._index["cpu"]] / "cpu.cfs_quota_us" if backend.version == 1 else None
    assert quota is None or read(quota).strip() == "50000"
    await asyncio.gather(c.kill(0), d.kill(0))


# --------------------------------------------------------------------------- event loops


def test_on_uvloop(tmp_path: Path) -> None:
    """The daemon runs on uvloop: launch, exit status, kill and cleanup there, without helper threads."""
    root = f"{TEST_PARENT}/{uuid.uuid4().hex[:12]}"

    async def main() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        czr = Containerizer(root, memory_poll_interval=0.1)
        try:
            threads = threading.active_count()
            done = [await czr.launch(spec(tmp_path, f"t{i}", ["/bin/sh", "-c", f"exit {i}"])) for i in range(20)]
            sleeper = await czr.launch(spec(tmp_path, "sleeper", ["sleep", "30"], mem_mb=64, cpus=0.25))
            # No thread per child: 21 children add none (other libraries in this process, such as grpc, may
            # start a thread of their own at any moment, so allow for one or two).
            assert threading.active_count() - threads <= 2
            results = await asyncio.gather(*(c.wait() for c in done))
            assert [r.exit_code for r in results] == list(range(20))
            await sleeper.kill(5.0)
            assert (await sleeper.wait()).signal == signal.SIGTERM
        finally:
            await czr.shutdown()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    assert [m / root for m in _cgroup_mounts() if (m / root).exists()] == []


@pytest.mark.parametrize("isolation", [pytest.param("auto", marks=needs_cgroups, id="cgroups"), "posix"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_create_subprocess_exec_fallback(tmp_path: Path, isolation: str, loop: str) -> None:
    """Where pidfds are unavailable, tasks start through asyncio.create_subprocess_exec."""
    root = f"{TEST_PARENT}/{uuid.uuid4().hex[:12]}"

    async def main() -> None:
        czr = Containerizer(root, isolation=isolation)
        czr._fast_spawn = False
        try:
            a = await czr.launch(spec(tmp_path, "a", ["/bin/sh", "-c", "sleep 30 & echo $!; pwd; exit 4"]))
            b = await czr.launch(spec(tmp_path, "b", ["sleep", "30"]))
            ta = await a.wait()
            assert ta.exit_code == 4
            child, cwd = read(tmp_path / "a" / "stdout").split()
            assert cwd == str(tmp_path / "a")
            await poll(lambda: gone(int(child)), what="the leftover child to die")
            # A command in a container, through the same fallback; its leftovers die with it.
            with open(tmp_path / "exec.out", "wb") as out:
                check = await b.exec(["/bin/sh", "-c", "sleep 30 & echo $!; pwd; exit 3"], stdout=out.fileno())
            assert await check.wait() == 3
            check.kill()
            child, cwd = read(tmp_path / "exec.out").split()
            assert cwd == str(tmp_path / "b")
            await poll(lambda: gone(int(child)), what="the command's leftover child to die")
            await b.kill(0.1)
            assert (await b.wait()).signal in (signal.SIGTERM, signal.SIGKILL)
        finally:
            await czr.shutdown()

    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    assert [m / root for m in _cgroup_mounts() if (m / root).exists()] == []


# --------------------------------------------------------------------------- cgroup v2 plumbing


def _writable_cgroup2() -> Path | None:
    if os.geteuid() != 0:
        return None
    mount = cg.v2_mount(cg.detect_mounts(), Path("/sys/fs/cgroup"))
    return mount if mount is not None and os.access(mount, os.W_OK) else None


@pytest.mark.cgroups
@pytest.mark.skipif(_writable_cgroup2() is None, reason="needs root and a writable cgroup2 mount")
async def test_cgroup2_backend_without_controllers(
    make_czr: MakeCzr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exercise the v2 backend's join, kill and cleanup on whatever cgroup2 mount exists
    (on hybrid hosts its controllers are bound to v1, so it runs with none)."""
    mount = _writable_cgroup2()
    assert mount is not None
    root = f"{TEST_PARENT}/{uuid.uuid4().hex[:12]}"
    backend = cg.V2Backend(PurePosixPath(root), [], mount, True, 64)
    backend.setup()
    monkeypatch.setattr(czr_module, "_select_backend", lambda *a, **k: (backend, ""))
    czr = make_czr(root)
    assert czr.cgroups_version == 2
    a = await czr.launch(spec(tmp_path, "a", ["/bin/sh", "-c", "sleep 30 & echo $!; cat /proc/self/cgroup; exit 2"]))
    b = await czr.launch(spec(tmp_path, "b", ["/bin/sh", "-c", "sleep 30 & sleep 30"]))
    ta = await a.wait()
    assert ta.exit_code == 2
    child, *membership = read(tmp_path / "a" / "stdout").split()
    assert f"0::/{root}/a" in membership
    await poll(lambda: gone(int(child)), what="the leftover child to die")
    await poll(lambda: b.stats().get("processes", 0) >= 2, what="b's two processes")
    await b.kill(0)
    assert (await b.wait()).signal == signal.SIGKILL
    assert not (mount / root / "a").exists() and not (mount / root / "b").exists()


@pytest.mark.cgroups
@pytest.mark.skipif(_writable_cgroup2() is None, reason="needs root and a writable cgroup2 mount")
async def test_auto_warns_about_what_a_partial_cgroup2_lacks(
    make_czr: MakeCzr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--isolation=auto on a cgroup v2 hierarchy without (some) controllers: said once, posix polling stands in."""
    mount = _writable_cgroup2()
    assert mount is not None
    root = f"{TEST_PARENT}/{uuid.uuid4().hex[:12]}"
    backend = cg.V2Backend(PurePosixPath(root), [], mount, True, 64)
    backend.setup()
    monkeypatch.setattr(czr_module, "_select_backend", lambda *a, **k: (backend, ""))
    czr = make_czr(root)
    assert czr.cgroups_version == 2
    assert czr.isolators == ["posix/cpu", "posix/mem", "disk/du"]
    w = czr.warning
    assert w is not None and "\n" not in w
    for said in ("cgroup v2", "cgroups/cpu", "cgroups/mem", "cgroups/pids", "posix/mem", "polling", "NOT limited"):
        assert said in w, (said, w)
    # The stand-in works: memory is enforced by polling.
    one = f"{PY} -c 'a = bytearray(32 << 20); import time; time.sleep(30)'"
    hog = await czr.launch(spec(tmp_path, "hog", ["/bin/sh", "-c", f"{one} & {one}"], mem_mb=40))
    t = await asyncio.wait_for(hog.wait(), 10)
    assert (t.oom_killed, t.limitation) == (True, "memory"), t


def test_auto_names_a_single_missing_controller(make_czr: MakeCzr, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only pids missing (a v2 host that delegates cpu and memory but not pids): nothing stands in for it."""

    class NoPids(cg.V2Backend):
        def setup(self) -> None:  # (never launched on: the controllers are not really there)
            pass

    backend = NoPids(
        PurePosixPath(f"{TEST_PARENT}/never"), [cg.CPU, cg.CPUACCT, cg.MEM], Path("/nonexistent"), True, 64
    )
    monkeypatch.setattr(czr_module, "_select_backend", lambda *a, **k: (backend, ""))
    czr = make_czr()
    assert czr.isolators == ["cgroups/cpu", "cgroups/cpuacct", "cgroups/mem", "disk/du"]
    assert czr.warning is not None
    assert "does not delegate the pids controller" in czr.warning
    assert "cgroups/pids -> nothing" in czr.warning and "NOT limited" in czr.warning
    assert "cgroups/mem" not in czr.warning and "posix/mem" not in czr.warning


def test_mount_detection_and_joint_v1_mounts() -> None:
    """mountinfo parsing (escapes, joint cpu,cpuacct mounts) and one dir per joint hierarchy."""
    text = (
        "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "33 31 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "34 31 0:31 / /sys/fs/cgroup/un\\040ified rw - cgroup2 cgroup2 rw\n"
        "35 23 0:32 / /elsewhere/pids rw - cgroup cgroup rw,pids\n"
    )
    mounts = cg.parse_mountinfo(text)
    base = Path("/sys/fs/cgroup")
    v1 = cg.v1_mounts(mounts, base)
    assert v1 == {
        "cpu": base / "cpu,cpuacct",
        "cpuacct": base / "cpu,cpuacct",
        "memory": base / "memory",
    }  # /elsewhere is not under the base
    assert cg.v2_mount(mounts, base) == base / "un ified"
    backend = cg.V1Backend(PurePosixPath("a/b"), [cg.CPU, cg.CPUACCT, cg.MEM], v1, True, 10)
    assert backend.root_dirs == [base / "cpu,cpuacct" / "a/b", base / "memory" / "a/b"]


# --------------------------------------------------------------------------- checkpointed launches


@pytest.mark.parametrize(
    "isolation", [pytest.param("auto", marks=needs_cgroups, id="cgroups"), pytest.param("posix", id="posix")]
)
async def test_checkpointed_launch_reports_like_a_plain_one(make_czr: MakeCzr, tmp_path: Path, isolation: str) -> None:
    """The wrapper that stays as the task's parent is invisible in exit codes, signals, output and kills."""
    runtime = tmp_path / "runtime"
    czr = make_czr(isolation=isolation, runtime_dir=runtime)
    cp = {"checkpoint": True}
    c3 = await czr.launch(spec(tmp_path, "three", ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], **cp))
    c9 = await czr.launch(spec(tmp_path, "nine", ["/bin/sh", "-c", "kill -9 $$"], **cp))
    cq = await czr.launch(spec(tmp_path, "quit", ["/bin/sh", "-c", "kill -QUIT $$"], **cp))
    cn = await czr.launch(spec(tmp_path, "nocmd", ["no-such-command-xyz"], **cp))
    polite = await czr.launch(spec(tmp_path, "polite", [PY, "-c", TERM_EXITS], **cp))
    stubborn = await czr.launch(spec(tmp_path, "stubborn", [PY, "-c", TERM_IGNORED], **cp))
    # SIGINT is not ignored by the task (a shell's background command would have it ignored).
    sigint = await czr.launch(spec(tmp_path, "sigint", ["/bin/sh", "-c", "grep SigIgn /proc/self/status"], **cp))
    assert c3.checkpointed and not c3.recovered
    t3, t9, tq, tn, ti = await asyncio.gather(c3.wait(), c9.wait(), cq.wait(), cn.wait(), sigint.wait())
    assert (t3.exit_code, t3.signal, t3.message) == (3, None, "exited with status 3")
    assert read(tmp_path / "three" / "stdout") == "out\n" and read(tmp_path / "three" / "stderr") == "err\n"
    assert (t9.exit_code, t9.signal, t9.message) == (None, 9, "killed by signal 9")
    assert (tq.exit_code, tq.signal) == (None, signal.SIGQUIT)
    assert not list((tmp_path / "quit").glob("core*"))
    assert tn.exit_code == 127
    assert ti.exit_code == 0 and int(read(tmp_path / "sigint" / "stdout").split()[1], 16) & 0b110 == 0

    await poll(lambda: all(read(tmp_path / n / "stdout") == "ready\n" for n in ("polite", "stubborn")), what="ready")
    await asyncio.gather(polite.kill(10.0), stubborn.kill(0.3))
    tp, ts = await polite.wait(), await stubborn.wait()
    assert (tp.exit_code, tp.signal) == (7, None)  # one SIGTERM, handled: not a second one mid-handler
    assert (ts.exit_code, ts.signal) == (None, signal.SIGKILL)
    # Each recorded its status; the runtime dirs stay until released (or shutdown).
    assert (runtime / "three" / "status").read_text() == "3\n"
    assert (runtime / "polite" / "status").read_text() == "7\n"
    assert sorted(czr.recoverable()) == sorted(["three", "nine", "quit", "nocmd", "polite", "stubborn", "sigint"])
    czr.release("three")
    assert not (runtime / "three").exists()
    for c in (c3, c9, polite, stubborn):
        assert all(not p.exists() for p in c.cgroup_paths)


@pytest.mark.cgroups
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_checkpointed_oom_kill_is_reported(make_czr: MakeCzr, tmp_path: Path) -> None:
    czr = make_czr(runtime_dir=tmp_path / "runtime")
    if "cgroups/mem" not in czr.isolators:
        pytest.skip("no memory cgroup controller")
    argv = [PY, "-c", "a = bytearray(200 * 1024 * 1024); import time; time.sleep(5)"]
    c = await czr.launch(spec(tmp_path, "bomb", argv, mem_mb=64, checkpoint=True))
    t = await asyncio.wait_for(c.wait(), 10)
    assert (t.oom_killed, t.limitation, t.signal, t.message) == (True, "memory", 9, "memory limit 64 MiB exceeded")


# --------------------------------------------------------------------------- posix memory


async def test_posix_memory_limit_is_enforced_by_polling(make_czr: MakeCzr, tmp_path: Path) -> None:
    czr = make_czr(isolation="posix")
    assert "posix/mem" in czr.isolators
    # The memory is in grandchildren, each under the per-process data limit: the whole process tree counts.
    hog = f"{PY} -c 'import time; a = bytearray(32 << 20); time.sleep(30)'"
    hogs = f"{hog} & {hog} & {hog}; echo survived"
    bomb = await czr.launch(spec(tmp_path, "hog", ["/bin/sh", "-c", hogs], mem_mb=48))
    small = await czr.launch(spec(tmp_path, "small", ["sleep", "30"], mem_mb=48))
    t = await asyncio.wait_for(bomb.wait(), 10)
    assert (t.oom_killed, t.limitation, t.signal) == (True, "memory", signal.SIGKILL)
    assert t.message.startswith("memory limit 48 MiB exceeded (resident "), t.message
    assert read(tmp_path / "hog" / "stdout") == ""
    assert not small.done
    await small.kill(0)
    assert (await small.wait()).oom_killed is False


async def test_pollers_run_in_the_callers_task_group_and_end_with_the_containerizer(tmp_path: Path) -> None:
    """Lent a TaskGroup (set_spawn), the memory and disk pollers are its tasks; shutdown cancels them, so the
    group ends at once, and a limit is still enforced through them."""
    async with asyncio.TaskGroup() as group:
        czr = Containerizer(
            f"{TEST_PARENT}/{uuid.uuid4().hex[:12]}",
            isolation="posix,disk/du",
            memory_poll_interval=0.05,
            disk_poll_interval=0.05,
        )
        czr.set_spawn(group.create_task)
        try:
            # Each process under the per-process data limit: the poller, not RLIMIT_DATA, catches the tree.
            hog = f"{PY} -c 'import time; a = bytearray(32 << 20); time.sleep(30)'"
            bomb = await czr.launch(spec(tmp_path, "hog", ["/bin/sh", "-c", f"{hog} & {hog} & {hog}"], mem_mb=48))
            sleeper = await czr.launch(spec(tmp_path, "sleeper", ["sleep", "30"], mem_mb=48))
            t = await asyncio.wait_for(bomb.wait(), 10)
            assert (t.oom_killed, t.limitation) == (True, "memory")
            pollers = {task.get_name() for task in asyncio.all_tasks() if task.get_name().endswith("-poller")}
            assert pollers == {"containerizer-posix/mem-poller", "containerizer-disk/du-poller"}
            assert not sleeper.done
        finally:
            await czr.shutdown()
        assert not [task for task in asyncio.all_tasks() if task.get_name().endswith("-poller")]


def proc_limits(pid: int) -> dict[str, tuple[str, str]]:
    """/proc/<pid>/limits as name -> (soft, hard)."""
    out = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        soft, hard = line[26:].split()[:2]
        out[line[:26].strip()] = (soft, hard)
    return out


@pytest.mark.parametrize("checkpoint", [False, True], ids=["plain", "checkpoint"])
async def test_posix_rlimits_are_visible_in_proc(make_czr: MakeCzr, tmp_path: Path, checkpoint: bool) -> None:
    """posix: the task's mem is its RLIMIT_DATA, its disk (when enforced) its RLIMIT_FSIZE, no core dumps."""
    czr = make_czr(isolation="posix,disk/du", enforce_disk=True, runtime_dir=tmp_path / "rt")
    show = ["/bin/sh", "-c", "echo $$ > pid; exec sleep 30"]
    c = await czr.launch(spec(tmp_path, "lim", show, mem_mb=64, disk_mb=10, checkpoint=checkpoint))
    pid = int(await poll(lambda: read(tmp_path / "lim" / "pid").strip(), what="the task's pid"))
    limits = proc_limits(pid)
    assert limits["Max data size"] == (str(64 * MiB),) * 2
    assert limits["Max file size"] == (str(10 * MiB + 512),) * 2
    assert limits["Max core file size"] == ("0", "0")
    await c.kill(0)
    # Without --enforce-disk the disk is only measured: no file size limit; no mem, no data limit.
    measured = make_czr(isolation="posix,disk/du")
    c = await measured.launch(spec(tmp_path, "free", show, disk_mb=10))
    pid = int(await poll(lambda: read(tmp_path / "free" / "pid").strip(), what="the task's pid"))
    limits, mine = proc_limits(pid), proc_limits(os.getpid())
    assert limits["Max file size"] == mine["Max file size"]
    assert limits["Max data size"] == mine["Max data size"]
    await c.kill(0)


@pytest.mark.cgroups
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_cgroup_tasks_get_no_rlimits_but_the_file_size_with_enforce_disk(
    make_czr: MakeCzr, tmp_path: Path
) -> None:
    czr = make_czr(enforce_disk=True)
    if "cgroups/mem" not in czr.isolators:
        pytest.skip("no memory cgroup controller")
    c = await czr.launch(spec(tmp_path, "cg", ["sleep", "30"], mem_mb=64, disk_mb=10))
    # Read once the wrapper has set them and exec'd the task.
    await poll(lambda: Path(f"/proc/{c.pid}/comm").read_text().strip() == "sleep", what="the task's exec")
    limits, mine = proc_limits(c.pid), proc_limits(os.getpid())
    # No cgroup limits a file's size: RLIMIT_FSIZE (the disk and a block); nothing else.
    assert limits.pop("Max file size") == (str(10 * MiB + 512),) * 2
    del mine["Max file size"]
    assert limits == mine
    await c.kill(0)


async def test_posix_task_over_its_data_limit_fails(make_czr: MakeCzr, tmp_path: Path) -> None:
    czr = make_czr(isolation="posix")
    alloc = "a = bytearray({} << 20); a[-1] = 1; print('allocated', flush=True)"
    over = await czr.launch(spec(tmp_path, "over", [PY, "-c", alloc.format(100)], mem_mb=48))
    under = await czr.launch(spec(tmp_path, "under", [PY, "-c", alloc.format(16)], mem_mb=48))
    t_over, t_under = await asyncio.wait_for(asyncio.gather(over.wait(), under.wait()), 10)
    # The allocation itself fails (RLIMIT_DATA), before the memory poller could see anything resident.
    assert t_over.exit_code == 1 and t_over.limitation is None, t_over
    assert "MemoryError" in read(tmp_path / "over" / "stderr")
    assert read(tmp_path / "over" / "stdout") == ""
    assert t_under.exit_code == 0, read(tmp_path / "under" / "stderr")
    assert read(tmp_path / "under" / "stdout") == "allocated\n"


async def test_posix_file_size_limit_when_disk_is_enforced(make_czr: MakeCzr, tmp_path: Path) -> None:
    czr = make_czr(isolation="posix,disk/du", enforce_disk=True)
    writer = ["/bin/sh", "-c", f"exec head -c {3 * MiB} /dev/zero > big"]
    c = await czr.launch(spec(tmp_path, "big", writer, disk_mb=2))
    t = await asyncio.wait_for(c.wait(), 10)
    assert (t.signal, t.limitation) == (signal.SIGXFSZ, "disk"), t
    assert t.message.startswith("disk limit 2 MiB exceeded"), t.message
    assert (tmp_path / "big" / "big").stat().st_size == 2 * MiB + 512


# --------------------------------------------------------------------------- pid namespace


@pytest.mark.parametrize(
    "isolation",
    [
        pytest.param("cgroups/all,namespaces/pid", marks=needs_cgroups, id="cgroups"),
        pytest.param("posix,namespaces/pid", id="posix"),
    ],
)
@pytest.mark.parametrize("checkpoint", [False, True], ids=["plain", "checkpoint"])
async def test_pid_namespace(
    make_czr: MakeCzr, tmp_path: Path, isolation: str, checkpoint: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("namespaces/pid needs root and unshare")
    czr = make_czr(isolation=isolation, runtime_dir=tmp_path / "runtime")
    assert "namespaces/pid" in czr.isolators
    cp = {"checkpoint": checkpoint}
    ps = await czr.launch(spec(tmp_path, "ps", ["/bin/sh", "-c", "ps -e -o pid=,comm=; echo $$; exit 4"], **cp))
    t = await ps.wait()
    lines = read(tmp_path / "ps" / "stdout").split("\n")
    procs = [line for line in lines[:-2] if line.strip()]
    assert t.exit_code == 4, (t, read(tmp_path / "ps" / "stderr"))
    assert 1 <= len(procs) <= 3, procs  # the namespace's init, the task, ps itself
    assert lines[-2] == "2"  # the task is pid 2 under a tiny init
    # kill (SIGTERM reaches the task, not ignored as it would be by a pid 1), wait and stats work.
    polite = await czr.launch(spec(tmp_path, "polite", [PY, "-c", TERM_EXITS], **cp))
    # (sleep once it runs: a SIGTERM sent before the task exists reaches only the namespace's init, which ignores it)
    sig = await czr.launch(spec(tmp_path, "sig", ["/bin/sh", "-c", "echo ready; exec sleep 30"], **cp))
    await poll(lambda: read(tmp_path / "polite" / "stdout") == "ready\n", what="ready")
    await poll(lambda: read(tmp_path / "sig" / "stdout") == "ready\n", what="sleep started")
    assert (await poll(lambda: polite.stats().get("processes", 0) >= 1 and polite.stats()))["processes"] >= 1
    await asyncio.gather(polite.kill(5.0), sig.kill(5.0))
    tp, ts = await polite.wait(), await sig.wait()
    assert (tp.exit_code, tp.signal) == (7, None)
    assert (ts.exit_code, ts.signal) == (None, signal.SIGTERM)


def test_pid_namespace_is_opt_in() -> None:
    assert "namespaces/pid" not in Containerizer(f"{TEST_PARENT}/never", isolation="posix").isolators
    assert "namespaces/pid" in czr_module.KNOWN_ISOLATORS


# --------------------------------------------------------------------------- running a command in a container


def task_processes(c: Any) -> set[int]:
    """The live processes of a container: in its cgroup, else (posix) in its pid namespace or its session."""
    if c.cgroup_paths:
        return {p for p in cg.read_pids(c.cgroup_paths[0] / "cgroup.procs") if not gone(p)}
    own_ns = os.readlink("/proc/self/ns/pid")
    tree = [psutil.Process(c.pid), *psutil.Process(c.pid).children(recursive=True)]
    ns = next((n for p in tree if (n := os.readlink(f"/proc/{p.pid}/ns/pid")) != own_ns), None)
    found = set()
    for p in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if (os.readlink(f"/proc/{p.pid}/ns/pid") == ns if ns else os.getsid(p.pid) == c.pid) and not gone(p.pid):
                found.add(p.pid)
    return found


PROBE = 'id -u; pwd; echo "$FOO $BAR"; cat /proc/self/cgroup; tr "\\0" " " </proc/1/cmdline; echo'


@pytest.mark.parametrize(
    "isolation",
    [
        pytest.param("auto", marks=needs_cgroups, id="cgroups"),
        pytest.param("posix", id="posix"),
        pytest.param("cgroups/all,namespaces/pid", marks=needs_cgroups, id="cgroups-pidns"),
        pytest.param("posix,namespaces/pid", id="posix-pidns"),
    ],
)
@pytest.mark.parametrize("checkpoint", [False, True], ids=["plain", "checkpoint"])
async def test_exec_in_container(make_czr: MakeCzr, tmp_path: Path, isolation: str, checkpoint: bool) -> None:
    """A command run in an existing container: its cgroups, user, environment, sandbox, limits, namespaces."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("nsenter") is None:
        pytest.skip("needs root, setpriv and nsenter")
    czr = make_czr(isolation=isolation, runtime_dir=tmp_path / "rt")
    task_env = {**ENV, "FOO": "task", "BAR": "task"}
    s = spec(tmp_path, "task", ["sleep", "30"], env=task_env, user="nobody", mem_mb=64, checkpoint=checkpoint)
    c = await czr.launch(s)
    with open(tmp_path / "probe.out", "wb") as out:
        proc = await czr.exec_in_container("task", ["/bin/sh", "-c", PROBE], env={"BAR": "check"}, stdout=out.fileno())
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    uid, cwd, env, *cgroups, init = read(tmp_path / "probe.out").splitlines()
    assert (uid, cwd, env) == ("65534", str(tmp_path / "task"), "task check")
    inside = [line for line in cgroups if line.endswith(f":/{czr.root}/task")]
    assert len(inside) == len(c.cgroup_paths) and (c.cgroup_paths != []) == (not isolation.startswith("posix"))
    # In the task's pid and mount namespaces, pid 1 is the namespace's init (and /proc is the namespace's).
    assert ("aiomesos-init" in init) == isolation.endswith("namespaces/pid"), init

    # A command still running is killed as a whole (its children too), and nothing of it stays in the container.
    def task_sleeps() -> bool:
        for pid in task_processes(c):
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).name() == "sleep":
                    return True
        return False

    await poll(task_sleeps, what="the task's command to run")
    alive = task_processes(c)
    bg = "sleep 30 & echo $!; grep 'Max data size' /proc/self/limits; exec sleep 30"
    with open(tmp_path / "bg.out", "wb") as out:
        proc = await czr.exec_in_container("task", ["/bin/sh", "-c", bg], stdout=out.fileno())
    child, limits = await poll(
        lambda: (t := read(tmp_path / "bg.out")).count("\n") == 2 and t.splitlines(), what="the command's report"
    )
    pid_ns = isolation.endswith("namespaces/pid")
    if c.cgroup_paths or pid_ns:  # the command and its child are in the container (posix: its own session)
        nsenter = 1 if c.cgroup_paths and pid_ns else 0  # in the cgroups too, outside the pid namespace
        assert len(task_processes(c)) == len(alive) + 2 + nsenter
    if not c.cgroup_paths:  # posix: the task's rlimits apply to the command as well
        assert limits.split()[3:5] == [str(64 * MiB)] * 2, limits
    proc.kill()
    assert await asyncio.wait_for(proc.wait(), 5) == -signal.SIGKILL
    await poll(lambda: task_processes(c) == alive, what="the command and its child to die")
    if not pid_ns:  # (in the pid namespace, $! is the child's pid there)
        await poll(lambda: gone(int(child)), what="the command's child to die")
    assert not c.done

    await c.kill(0)
    await c.wait()
    with pytest.raises(ContainerizerError, match="not running"):
        await c.exec(["true"])
    for cid in ("task", "never-launched"):
        with pytest.raises(ContainerizerError, match="unknown container"):
            await czr.exec_in_container(cid, ["true"])


# --------------------------------------------------------------------------- disk


@pytest.mark.parametrize("enforce", [False, True], ids=["measure", "enforce"])
async def test_disk_usage_is_measured_and_enforced(make_czr: MakeCzr, tmp_path: Path, enforce: bool) -> None:
    czr = make_czr(isolation="posix,disk/du", disk_poll_interval=0.05, enforce_disk=enforce)
    assert "disk/du" in czr.isolators
    # Two files, each under the quota (posix: with --enforce-disk one file may not outgrow it, RLIMIT_FSIZE).
    writer = "for f in a b; do head -c 1572864 /dev/zero > $f; done; mkdir d; ln a d/hardlink; echo written; sleep 30"
    c = await czr.launch(spec(tmp_path, "w", ["/bin/sh", "-c", writer], disk_mb=2))
    if not enforce:
        stats = await poll(lambda: (s := c.stats()).get("disk_used_bytes", 0) >= 3 * MiB and s, what="usage")
        assert stats["disk_limit_bytes"] == 2 * MiB
        assert stats["disk_used_bytes"] < 4 * MiB  # the hard link counts once
        await c.kill(0)
        assert (await c.wait()).limitation is None
        return
    t = await asyncio.wait_for(c.wait(), 10)
    assert (t.limitation, t.oom_killed, t.signal) == ("disk", False, signal.SIGKILL)
    assert t.message.startswith("disk limit 2 MiB exceeded (sandbox uses 3."), t.message


def test_disk_usage_walk(tmp_path: Path) -> None:
    from mesos_agent.containerizer._disk import disk_usage

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x" * 100_000)
    (tmp_path / "link").symlink_to("/usr")  # not followed
    empty = disk_usage(str(tmp_path / "a" / "missing"))
    assert empty is None
    used = disk_usage(str(tmp_path))
    assert used is not None and 100_000 <= used < 200_000


# --------------------------------------------------------------------------- GPUs


def _fake_gpus() -> list[Any]:
    from mesos_agent.gpus import Gpu

    return [
        Gpu(0, "GPU-aaaaaaaa-0000-0000-0000-000000000000", "NVIDIA H100 80GB HBM3", 81559, minor=0),
        Gpu(1, "GPU-bbbbbbbb-1111-1111-1111-111111111111", "NVIDIA H100 80GB HBM3", 81559, minor=1),
    ]


async def test_gpu_environment(make_czr: MakeCzr, tmp_path: Path) -> None:
    czr = make_czr(isolation="posix,gpu/nvidia")
    show = ["/bin/sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES|$NVIDIA_VISIBLE_DEVICES|$CUDA_DEVICE_ORDER"']
    one = await czr.launch(spec(tmp_path, "one", show, gpus=(1,)))
    none = await czr.launch(spec(tmp_path, "none", show))
    await asyncio.gather(one.wait(), none.wait())
    assert read(tmp_path / "one" / "stdout") == "1|1|PCI_BUS_ID\n"
    assert read(tmp_path / "none" / "stdout") == "|void|PCI_BUS_ID\n"
    with pytest.raises(LaunchError, match="bad GPU"):
        await czr.launch(spec(tmp_path, "dup", ["true"], gpus=(0, 0)))
    known = make_czr(isolation="posix", gpus=_fake_gpus())
    with pytest.raises(LaunchError, match="no GPU with index"):
        await known.launch(spec(tmp_path, "two", ["true"], gpus=(2,)))


@pytest.mark.cgroups
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_gpu_devices_cgroup_denies_other_gpus(make_czr: MakeCzr, tmp_path: Path) -> None:
    """With the v1 devices controller a task may open its own GPU's device node only (fake nodes, major 195)."""
    czr = make_czr(gpus=_fake_gpus())
    if "cgroups/devices" not in czr.isolators:
        pytest.skip("no cgroup v1 devices controller")
    assert "gpu/nvidia" in czr.isolators
    dev = tmp_path / "dev"
    dev.mkdir()
    for minor in (0, 1):
        os.mknod(dev / f"nvidia{minor}", 0o666 | stat.S_IFCHR, os.makedev(195, minor))
    probe = f"for n in 0 1; do cat {dev}/nvidia$n 2>&1 | sed 's/.*: //'; done; echo $CUDA_VISIBLE_DEVICES"
    c = await czr.launch(spec(tmp_path, "gpu0", ["/bin/sh", "-c", probe], gpus=(0,)))
    assert (await c.wait()).exit_code == 0
    own, other, visible = read(tmp_path / "gpu0" / "stdout").splitlines()
    # Allowed by the cgroup: whatever the driver behind the fake node says (none: ENXIO), but not EPERM.
    assert own != "Operation not permitted" and own, own
    assert other == "Operation not permitted"  # denied by the devices cgroup
    assert visible == _fake_gpus()[0].uuid  # behind the cgroup CUDA renumbers from 0: name it by UUID
    plain = await czr.launch(spec(tmp_path, "nogpu", ["/bin/sh", "-c", probe]))
    await plain.wait()
    assert read(tmp_path / "nogpu" / "stdout").splitlines()[:2] == ["Operation not permitted"] * 2


@pytest.mark.cgroups
@pytest.mark.skipif(_writable_cgroup2() is None, reason="needs root and a writable cgroup2 mount")
async def test_gpu_devices_are_denied_by_ebpf_on_cgroup2(
    make_czr: MakeCzr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On cgroup v2 an eBPF device program on the task's cgroup denies the other GPUs' nodes (fake, major 195)."""
    from mesos_agent.containerizer import _bpf_devices

    if not _bpf_devices.supported():
        pytest.skip("this kernel does not load cgroup device programs")
    mount = _writable_cgroup2()
    assert mount is not None
    root = f"{TEST_PARENT}/{uuid.uuid4().hex[:12]}"
    real_select = czr_module._select_backend

    def v2_only(*args: Any, **kwargs: Any) -> Any:
        # This host's v2 mount may have no controllers (they sit on v1): device control needs none.
        backend = cg.V2Backend(PurePosixPath(root), [cg.DEVICES], mount, True, 64)
        backend.gpu_minors = dict(args[6] if len(args) > 6 else kwargs["gpu_minors"])
        backend.setup()
        return backend, ""

    monkeypatch.setattr(czr_module, "_select_backend", v2_only)
    czr = make_czr(root, gpus=_fake_gpus())
    monkeypatch.setattr(czr_module, "_select_backend", real_select)
    assert czr.cgroups_version == 2 and "cgroups/devices" in czr.isolators
    dev = tmp_path / "dev"
    dev.mkdir()
    for minor in (0, 1):
        os.mknod(dev / f"nvidia{minor}", 0o666 | stat.S_IFCHR, os.makedev(195, minor))
    probe = f"for n in 0 1; do cat {dev}/nvidia$n 2>&1 | sed 's/.*: //'; done; cat /dev/null && echo null-ok"
    c = await czr.launch(spec(tmp_path, "gpu1", ["/bin/sh", "-c", probe], gpus=(1,)))
    assert (await c.wait()).exit_code == 0
    other, own, null = read(tmp_path / "gpu1" / "stdout").splitlines()
    assert other == "Operation not permitted"  # GPU 0 is denied by the program
    assert own != "Operation not permitted" and own, own  # its own GPU is allowed (the driver may refuse)
    assert null == "null-ok"  # other devices are untouched
    plain = await czr.launch(spec(tmp_path, "nogpu", ["/bin/sh", "-c", probe]))
    await plain.wait()
    assert read(tmp_path / "nogpu" / "stdout").splitlines() == ["Operation not permitted"] * 2 + ["null-ok"]


def _without_v1_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    real = cg.v1_mounts
    monkeypatch.setattr(cg, "v1_mounts", lambda *a: {k: v for k, v in real(*a).items() if k != "devices"})


def test_gpus_without_device_control_are_warned_about(
    make_czr: MakeCzr, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """GPUs, but no v1 devices controller and a kernel that refuses eBPF: the environment is the only isolation."""
    from mesos_agent.containerizer import _bpf_devices

    monkeypatch.setattr(_bpf_devices, "supported", lambda: False)
    _without_v1_devices(monkeypatch)
    czr = make_czr(gpus=_fake_gpus())
    assert "gpu/nvidia" in czr.isolators and "cgroups/devices" not in czr.isolators
    assert czr.warning is not None and "\n" not in czr.warning
    assert "GPU isolation is by environment only" in czr.warning, czr.warning
    assert "CUDA_VISIBLE_DEVICES" in czr.warning and "eBPF" in czr.warning
    # GPUs whose device minors are unknown cannot be confined either.
    unknown = make_czr(gpus=[replace(g, minor=None) for g in _fake_gpus()])
    assert unknown.warning is not None and "GPU isolation is by environment only" in unknown.warning
    assert "device minor" in unknown.warning
    # No GPUs, or GPUs not isolated at all (not asked for): nothing to say about them.
    for quiet in (make_czr(), make_czr(isolation="posix", gpus=_fake_gpus())):
        assert "GPU" not in (quiet.warning or "")


@pytest.mark.cgroups
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
def test_gpus_with_device_control_are_not_warned_about(make_czr: MakeCzr) -> None:
    czr = make_czr(gpus=_fake_gpus())
    if "cgroups/devices" not in czr.isolators:
        pytest.skip("no device control on this host")
    assert "GPU" not in (czr.warning or "")


def test_ebpf_device_program_shape() -> None:
    """Two instructions per denied device between a fixed head and tail; every jump goes forward, to the next
    device's test or to allow / deny."""
    from mesos_agent.containerizer import _bpf_devices

    for deny in ([], [(195, 0)], [(195, 0), (195, 3), (1, 5)]):
        code = _bpf_devices.deny_program(deny)
        assert len(code) == 8 * (4 + 1 + 2 * len(deny) + (4 if deny else 2))
        n = len(code) // 8
        for i in range(n):
            op, _regs, off, _imm = struct.unpack_from("<BBhi", code, 8 * i)
            if op in (0x15, 0x55):
                target = i + 1 + off
                assert i < target < n and struct.unpack_from("<B", code, 8 * target)[0] in (0xB7, 0x55)


def test_termination_stays_positional() -> None:
    from mesos_agent.containerizer import Termination

    t = Termination(0, None, False, "exited with status 0")
    assert t.limitation is None
