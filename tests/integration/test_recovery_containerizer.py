"""Re-adopting checkpointed containers after the agent process died.

The "first agent" is a real process (a Containerizer in a child Python
process) that launches checkpointed tasks and is then SIGKILLed; a new
Containerizer in the test process recovers them from the same cgroup root and
runtime dir.  Every test checks that no process and no cgroup is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from mesos_agent.containerizer import Container, Containerizer, LaunchSpec
from mesos_agent.containerizer import _runtime as rt
from mesos_agent.containerizer._procfs import boot_id, start_time

from .test_containerizer import ENV, SKIP_REASON, TEST_PARENT, _cgroup_mounts, gone, poll, read

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]
needs_cgroups = [pytest.mark.cgroups, pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")]

# The first agent process: launch the given checkpointed tasks, report their pids, then wait to be killed.
FIRST_AGENT = """
import asyncio, json, sys
from pathlib import Path
from mesos_agent.containerizer import Containerizer, LaunchSpec

cfg = json.loads(sys.argv[1])

async def main():
    czr = Containerizer(cfg["root"], runtime_dir=cfg["runtime_dir"], isolation=cfg["isolation"])
    pids = {}
    for s in cfg["specs"]:
        cwd = Path(s["cwd"])
        spec = LaunchSpec(
            s["id"], s["argv"], cfg["env"], cwd, cwd / "stdout", cwd / "stderr",
            cpus=s.get("cpus"), mem_mb=s.get("mem_mb"), checkpoint=s.get("checkpoint", True),
        )
        pids[s["id"]] = (await czr.launch(spec)).pid
    print(json.dumps({"pids": pids, "isolators": czr.isolators}), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


class Host:
    """One cgroup root and runtime dir shared by the killed agent and its successors."""

    def __init__(self, tmp_path: Path, isolation: str) -> None:
        self.tmp_path = tmp_path
        self.isolation = isolation
        self.root = f"{TEST_PARENT}/{uuid.uuid4().hex[:12]}"
        self.runtime_dir = tmp_path / "runtime"
        self.made: list[Containerizer] = []
        self.pids: dict[str, int] = {}
        # Other processes a test expects to be killed (pid -> start time), killed at the end if not.
        self.strays: dict[int, int | None] = {}

    def sandbox(self, cid: str) -> Path:
        return self.tmp_path / cid

    def first_agent(self, tasks: dict[str, list[str]], **extra: dict[str, Any]) -> dict[str, int]:
        """Launch tasks (id -> argv) in a child agent process, then SIGKILL that process."""
        specs = []
        for cid, argv in tasks.items():
            self.sandbox(cid).mkdir()
            specs.append({"id": cid, "argv": argv, "cwd": str(self.sandbox(cid)), **extra.get(cid, {})})
        cfg = {
            "root": self.root,
            "runtime_dir": str(self.runtime_dir),
            "isolation": self.isolation,
            "env": ENV,
            "specs": specs,
        }
        agent = subprocess.Popen(
            [PY, "-c", FIRST_AGENT, json.dumps(cfg)], stdout=subprocess.PIPE, cwd=REPO, start_new_session=True
        )
        try:
            assert agent.stdout is not None
            line = agent.stdout.readline()
            assert line, "the first agent died before launching its tasks"
            self.pids.update(json.loads(line)["pids"])
        finally:
            agent.kill()  # SIGKILL: no shutdown, no cleanup
            agent.wait()
        return self.pids

    def containerizer(self, **kwargs: Any) -> Containerizer:
        czr = Containerizer(
            self.root, isolation=self.isolation, runtime_dir=self.runtime_dir, memory_poll_interval=0.1, **kwargs
        )
        self.made.append(czr)
        return czr

    def status(self, cid: str) -> int | None:
        return rt.read_status(self.runtime_dir / cid / rt.STATUS)

    def cgroup_dirs(self) -> list[Path]:
        return [
            m / self.root / d.name
            for m in _cgroup_mounts()
            if (m / self.root).is_dir()
            for d in (m / self.root).iterdir()
            if d.is_dir()
        ]


MakeHost = Callable[..., Host]


@pytest.fixture
async def make_host(tmp_path: Path) -> AsyncIterator[MakeHost]:
    hosts: list[Host] = []

    def make(isolation: str = "auto") -> Host:
        host = Host(tmp_path, isolation)
        hosts.append(host)
        return host

    try:
        yield make
    finally:
        for host in hosts:
            for czr in host.made:
                await czr.shutdown()
            # Whatever a test left: a fresh containerizer finds and kills it.
            last = Containerizer(host.root, isolation=host.isolation, runtime_dir=host.runtime_dir)
            leftovers = last.cleanup_orphans()
            await last.shutdown()
            left = [m / host.root for m in _cgroup_mounts() if (m / host.root).exists()]
            for pid in host.pids.values():
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            # (pid, start time): that very process, not a later one that reuses the pid.
            strays = [p for p, t in host.strays.items() if start_time(p) == t and not gone(p)]
            for pid in strays:
                os.kill(pid, signal.SIGKILL)
            await poll(
                lambda h=host: (
                    all(gone(p) for p in h.pids.values())
                    and all(start_time(p) != t or gone(p) for p, t in h.strays.items())
                ),
                what="every process to die",
            )
            assert left == [], f"cgroup dirs left behind: {left}"
            assert leftovers == [], f"containers left behind: {leftovers}"
            assert strays == [], f"processes left behind: {strays}"


def wait_for_go(code: str) -> list[str]:
    """A task that runs until the file 'go' appears in its sandbox, then runs code."""
    return ["/bin/sh", "-c", f"while [ ! -e go ]; do sleep 0.02; done; {code}"]


async def until_status(host: Host, cid: str) -> int:
    """The status the wrapper of cid recorded, once it has."""
    found: list[int] = await poll(lambda: (s := host.status(cid)) is not None and [s], what=f"{cid}'s status")
    return found[0]


# --------------------------------------------------------------------------- the main scenario


@pytest.mark.parametrize(
    "isolation", [pytest.param("auto", marks=needs_cgroups, id="cgroups"), pytest.param("posix", id="posix")]
)
async def test_recover_after_agent_sigkill(make_host: MakeHost, isolation: str) -> None:
    host = make_host(isolation)
    trap_term = "trap 'exit 9' TERM; echo ready; while :; do sleep 0.02; done"
    pids = host.first_agent(
        {
            "runs": wait_for_go("exit 3"),  # still running at recovery, ends later with 3
            "killed": ["/bin/sh", "-c", trap_term],  # still running, killed by the new agent
            "ended": wait_for_go("exit 7"),  # ends while no agent watches
            "signalled": wait_for_go("kill -USR1 $$"),  # dies of a signal while no agent watches
            "orphan": ["sleep", "60"],
        },
        runs={"mem_mb": 64, "cpus": 0.5},
    )
    # The agent is dead; its tasks are not.
    assert not any(gone(p) for p in pids.values())
    for cid in ("ended", "signalled"):
        (host.sandbox(cid) / "go").touch()
    assert await until_status(host, "ended") == 7
    assert await until_status(host, "signalled") == 128 + signal.SIGUSR1
    await poll(lambda: gone(pids["ended"]) and gone(pids["signalled"]), what="the ended wrappers to exit")

    czr = host.containerizer()
    assert host.runtime_dir.is_dir() and set(czr.recoverable()) == set(pids)
    got = await czr.recover_all(["runs", "killed", "ended", "signalled", "never-launched"])
    assert got["never-launched"] is None
    runs, killed, ended, signalled = (got[c] for c in ("runs", "killed", "ended", "signalled"))
    assert isinstance(runs, Container) and isinstance(killed, Container)
    assert isinstance(ended, Container) and isinstance(signalled, Container)
    assert runs.recovered and runs.checkpointed and runs.pid == pids["runs"]

    # Ended while the agent was away: the real exit code, the real signal.
    te, ts = await asyncio.wait_for(asyncio.gather(ended.wait(), signalled.wait()), 5)
    assert (te.exit_code, te.signal, te.message) == (7, None, "exited with status 7")
    assert (ts.exit_code, ts.signal, ts.message) == (None, signal.SIGUSR1, f"killed by signal {signal.SIGUSR1}")
    assert all(not p.exists() for p in ended.cgroup_paths)

    # Still running: adopted.  stats() works, the limits are the recorded ones.
    assert not runs.done and {c.container_id for c in czr.containers()} == {"runs", "killed"}
    stats = await poll(lambda: (s := runs.stats()) and s.get("processes", 0) >= 1 and s, what="stats")
    assert stats["mem_limit_bytes"] == 64 * 1024 * 1024 and stats["cpus_limit"] == 0.5
    assert {"cpus_user_time_secs", "mem_rss_bytes"} <= set(stats)

    # kill() works on an adopted container (SIGTERM reaches the task once: it exits 9 from its trap).
    await poll(lambda: read(host.sandbox("killed") / "stdout") == "ready\n", what="the trap to be set")
    t0 = time.monotonic()
    await killed.kill(5.0)
    tk = await killed.wait()
    assert (tk.exit_code, tk.signal) == (9, None), tk
    assert time.monotonic() - t0 < 3

    # wait() of an adopted container resolves when its task ends, with the real exit code.
    (host.sandbox("runs") / "go").touch()
    tr = await asyncio.wait_for(runs.wait(), 5)
    assert (tr.exit_code, tr.signal, tr.oom_killed) == (3, None, False)
    assert all(not p.exists() for p in runs.cgroup_paths)

    # The one not recovered is an orphan: cleaned up (process killed, cgroups and runtime dir removed).
    assert czr.cleanup_orphans() == ["orphan"]
    await poll(lambda: gone(pids["orphan"]), what="the orphan to die")
    assert not (host.runtime_dir / "orphan").exists()
    assert host.cgroup_dirs() == []
    # Finished containers keep their recorded status until released.
    assert sorted(czr.recoverable()) == ["ended", "killed", "runs", "signalled"]
    for cid in ("ended", "killed", "runs", "signalled"):
        czr.release(cid)
    assert czr.recoverable() == []
    assert await czr.recover("ended") is None


@pytest.mark.parametrize(
    "isolation", [pytest.param("auto", marks=needs_cgroups, id="cgroups"), pytest.param("posix", id="posix")]
)
async def test_adopted_task_killed_with_sigkill_and_memory_limit(make_host: MakeHost, isolation: str) -> None:
    host = make_host(isolation)
    stubborn = "trap '' TERM; echo ready; while :; do sleep 0.02; done"
    # Three processes, each under the posix per-process data limit, 120 MiB together.
    one = f"{PY} -c 'import time; a = bytearray(40 << 20); time.sleep(30)'"
    bomb = f"{one} & {one} & {one}"
    pids = host.first_agent({"stubborn": ["/bin/sh", "-c", stubborn], "bomb": wait_for_go(bomb)}, bomb={"mem_mb": 64})
    czr = host.containerizer()
    stubborn_c = await czr.recover("stubborn")
    bomb_c = await czr.recover("bomb")
    assert stubborn_c is not None and bomb_c is not None
    await poll(lambda: read(host.sandbox("stubborn") / "stdout") == "ready\n", what="the trap to be set")
    t0 = time.monotonic()
    await stubborn_c.kill(0.3)
    t = await stubborn_c.wait()
    assert (t.exit_code, t.signal) == (None, signal.SIGKILL), t
    assert 0.25 < time.monotonic() - t0 < 3
    # The memory limit of an adopted container is still enforced (cgroup OOM kill, or the posix poller).
    (host.sandbox("bomb") / "go").touch()
    tb = await asyncio.wait_for(bomb_c.wait(), 10)
    assert tb.oom_killed and tb.limitation == "memory" and tb.message.startswith("memory limit 64 MiB exceeded"), tb
    await poll(lambda: all(gone(p) for p in pids.values()), what="every process to die")


# --------------------------------------------------------------------------- identity checks


@pytest.mark.cgroups
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_pid_reuse_is_detected(make_host: MakeHost) -> None:
    host = make_host()
    pids = host.first_agent({"vanished": ["sleep", "60"], "recorded": wait_for_go("exit 0")})
    # "vanished": its wrapper and task are SIGKILLed while no agent watches (no status recorded) ...
    wrapper = psutil.Process(pids["vanished"])
    for proc in [wrapper, *wrapper.children(recursive=True)]:  # the wrapper first: it records nothing
        proc.kill()
    await poll(lambda: gone(pids["vanished"]), what="the wrapper to die")
    # ... and its pid now names a stranger (outside the container): a process of the test.  (A real reuse
    # comes after the pid space has wrapped around: start times are ticks of 10 ms, let some pass.)
    await asyncio.sleep(0.05)
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        for cid in ("vanished", "recorded"):
            path = host.runtime_dir / cid / rt.RECORD
            record = json.loads(path.read_text())
            record["pid"] = stranger.pid  # the recorded start time stays the original's
            path.write_text(json.dumps(record))
        # "recorded": its task ended with a recorded status (the wrapper's pid is reused as well).
        (host.sandbox("recorded") / "go").touch()
        assert await until_status(host, "recorded") == 0

        czr = host.containerizer()
        vanished = await czr.recover("vanished")
        recorded = await czr.recover("recorded")
        assert vanished is not None and recorded is not None
        tv, tr = await asyncio.wait_for(asyncio.gather(vanished.wait(), recorded.wait()), 5)
        assert (tv.exit_code, tv.signal) == (None, None)
        assert tv.message.startswith("exit status unknown"), tv
        assert (tr.exit_code, tr.signal) == (0, None)
        await vanished.kill(0)  # over: signals nobody
        assert stranger.poll() is None, "the stranger holding the reused pid was signalled"
        assert host.cgroup_dirs() == []
    finally:
        stranger.kill()
        stranger.wait()


async def test_reboot_and_corrupt_records(make_host: MakeHost) -> None:
    host = make_host("posix")
    pids = host.first_agent({"before": ["sleep", "60"], "done": ["true"], "junk": ["sleep", "60"]})
    assert await until_status(host, "done") == 0
    for cid in ("before", "done"):
        path = host.runtime_dir / cid / rt.RECORD
        record = json.loads(path.read_text())
        record["boot_id"] = "an-earlier-boot"
        path.write_text(json.dumps(record))
    (host.runtime_dir / "junk" / rt.RECORD).write_text("{not json")
    czr = host.containerizer()
    # A task of an earlier boot without a recorded status is unknown (the agent reports it lost) ...
    assert await czr.recover("before") is None
    # ... one that recorded its status before the reboot still reports it.
    done = await czr.recover("done")
    assert done is not None and (await done.wait()).exit_code == 0
    assert await czr.recover("junk") is None
    # Orphans of an earlier boot are not signalled by pid (that pid is someone else's now) ...
    czr.release("done")
    assert czr.cleanup_orphans() == ["before", "junk"]
    assert not gone(pids["before"])
    # ... (here the boot did not really change: end them by hand).
    for cid in ("before", "junk"):
        os.killpg(pids[cid], signal.SIGKILL)
    await poll(lambda: gone(pids["before"]) and gone(pids["junk"]), what="the tasks to die")


# --------------------------------------------------------------------------- orphans and lifecycle


@pytest.mark.parametrize(
    "isolation", [pytest.param("auto", marks=needs_cgroups, id="cgroups"), pytest.param("posix", id="posix")]
)
async def test_cleanup_orphans_keeps_what_it_is_told(make_host: MakeHost, isolation: str) -> None:
    host = make_host(isolation)
    pids = host.first_agent(
        {name: ["sleep", "60"] for name in ("adopted", "kept", "orphan", "plain")},
        plain={"checkpoint": False},
    )
    czr = host.containerizer()
    adopted = await czr.recover("adopted")
    assert adopted is not None and not adopted.done
    assert await czr.recover("plain") is None  # not checkpointed: nothing to recover
    cleaned = czr.cleanup_orphans(keep={"kept"})
    # A task of a non-checkpointing framework is an orphan too, found by its cgroups or (posix) its pid record.
    assert cleaned == ["orphan", "plain"]
    await poll(lambda: gone(pids["orphan"]) and gone(pids["plain"]), what="the orphans to die")
    assert not gone(pids["adopted"]) and not gone(pids["kept"])
    czr._fast_spawn = False  # where pidfds are unavailable: the adopted wrapper is watched by polling /proc
    kept = await czr.recover("kept")
    assert kept is not None and type(kept._proc).__name__ == "PolledProcess"
    await asyncio.gather(adopted.kill(1.0), kept.kill(1.0))
    assert (await kept.wait()).signal == signal.SIGTERM
    assert (await adopted.wait()).signal == signal.SIGTERM


# An agent killed -9 in the middle of a launch: after the spawn of the wrapper, before (or just after) its record.
DYING_AGENT = """
import asyncio, json, os, signal, sys
from pathlib import Path
from mesos_agent.containerizer import Containerizer, LaunchSpec
from mesos_agent.containerizer._launcher import LaunchGate

cfg = json.loads(sys.argv[1])
write_record = Containerizer._write_record

def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)

def die_instead_of_recording(self, spec, proc, paths, started):
    print(json.dumps({"pid": proc.pid}), flush=True)
    die()

def record_then_die(self, spec, proc, paths, started):
    write_record(self, spec, proc, paths, started)
    print(json.dumps({"pid": proc.pid}), flush=True)

Containerizer._write_record = die_instead_of_recording if cfg["dies"] == "before_record" else record_then_die
LaunchGate.open = die

async def main():
    czr = Containerizer(cfg["root"], runtime_dir=cfg["runtime_dir"], isolation=cfg["isolation"])
    cwd = Path(cfg["cwd"])
    await czr.launch(LaunchSpec("c1", cfg["argv"], cfg["env"], cwd, cwd / "stdout", cwd / "stderr", checkpoint=True))

asyncio.run(main())
"""


@pytest.mark.parametrize(
    "isolation", [pytest.param("auto", marks=needs_cgroups, id="cgroups"), pytest.param("posix", id="posix")]
)
@pytest.mark.parametrize("dies", ["before_record", "after_record"])
async def test_a_task_never_starts_when_its_agent_dies_in_the_middle_of_its_launch(
    make_host: MakeHost, isolation: str, dies: str
) -> None:
    """bench.chaos found it: an agent killed -9 after spawning a checkpointed task's wrapper and before writing
    its launch record left a task that ran to its end while the next agent, finding no record of its container,
    reported it TASK_LOST. The task now starts only once its record is written (the wrapper waits for the
    agent's word): never when the agent dies before; after, the record is there and says it never started."""
    host = make_host(isolation)
    sandbox = host.sandbox("c1")
    sandbox.mkdir()
    cfg = {
        "root": host.root,
        "runtime_dir": str(host.runtime_dir),
        "isolation": isolation,
        "env": ENV,
        "cwd": str(sandbox),
        "argv": ["/bin/sh", "-c", "touch ran"],
        "dies": dies,
    }
    agent = subprocess.Popen([PY, "-c", DYING_AGENT, json.dumps(cfg)], stdout=subprocess.PIPE, cwd=REPO)
    assert agent.stdout is not None
    line = agent.stdout.readline()
    assert agent.wait(30) == -signal.SIGKILL and line, "the agent did not die in the middle of the launch"
    host.pids["c1"] = json.loads(line)["pid"]
    # The wrapper outlives the agent, and ends on its own: the agent's end of its pipe went with the agent.
    await poll(lambda: gone(host.pids["c1"]), what="the wrapper to end")
    assert not (sandbox / "ran").exists(), "the task ran although its agent died before confirming its launch"
    assert "the task never started" in read(sandbox / "stderr")

    czr = host.containerizer()
    recovered = await czr.recover("c1")
    if dies == "before_record":
        assert recovered is None  # the agent reports the task lost: and lost it is, it never ran
        assert czr.cleanup_orphans() == ["c1"]
    else:
        assert recovered is not None
        ended = await asyncio.wait_for(recovered.wait(), 5)
        assert ended.exit_code == 125 and ended.message.startswith("launch failed: the agent did not confirm")
        czr.release("c1")
    assert not (sandbox / "ran").exists()
    assert host.cgroup_dirs() == []


async def test_posix_tasks_of_non_checkpointing_frameworks_do_not_outlive_a_crashed_agent(
    make_host: MakeHost,
) -> None:
    """posix: every launch leaves a pid record, so a new agent's cleanup_orphans kills what a kill -9 left,
    including the children of a task whose main process ended while no agent watched."""
    host = make_host("posix")
    spawn_child = "sleep 60 & echo $! > child; "
    pids = host.first_agent(
        {
            "plain": ["/bin/sh", "-c", spawn_child + "exec sleep 60"],
            "ended": ["/bin/sh", "-c", spawn_child + "while [ ! -e go ]; do sleep 0.02; done; exit 0"],
        },
        plain={"checkpoint": False},
        ended={"checkpoint": False},
    )
    children = {}
    for cid in ("plain", "ended"):
        children[cid] = int(await poll(lambda c=cid: read(host.sandbox(c) / "child").strip(), what=f"{cid}'s child"))
        host.strays[children[cid]] = start_time(children[cid])  # the fixture makes sure they are gone
    # The agent is dead, its tasks are not; one task's main process now ends, leaving its child behind.
    (host.sandbox("ended") / "go").touch()
    await poll(lambda: gone(pids["ended"]), what="the main process to end")
    assert not any(gone(p) for p in [pids["plain"], *children.values()])

    czr = host.containerizer()
    assert czr.recoverable() == []  # not checkpointed: nothing to recover ...
    assert await czr.recover("plain") is None
    assert czr.cleanup_orphans() == ["ended", "plain"]  # ... but found and killed
    await poll(lambda: all(gone(p) for p in [*pids.values(), *children.values()]), what="every orphan to die")
    assert list(host.runtime_dir.iterdir()) == []
    assert czr.cleanup_orphans() == []


@pytest.mark.parametrize(
    "isolation", [pytest.param("auto", marks=needs_cgroups, id="cgroups"), pytest.param("posix", id="posix")]
)
async def test_pid_records_last_as_long_as_their_posix_containers(tmp_path: Path, isolation: str) -> None:
    """posix: a pid record per launch while the task runs (with cgroups, none: the cgroups are the trace)."""
    root = f"{TEST_PARENT}/{uuid.uuid4().hex[:12]}"
    runtime = tmp_path / "rt"

    def journal() -> dict[str, rt.LaunchRecord]:
        return rt.read_journal(runtime / rt.JOURNAL)

    def sandbox(cid: str) -> LaunchSpec:
        (tmp_path / cid).mkdir()
        s = tmp_path / cid
        return LaunchSpec(cid, ["sleep", "30"], ENV, s, s / "o", s / "e")

    czr = Containerizer(root, isolation=isolation, runtime_dir=runtime)
    fresh = Containerizer(root, isolation=isolation, runtime_dir=runtime)
    try:
        c = await czr.launch(sandbox("p"))
        record = journal().get("p")
        if isolation == "posix":
            assert record is not None and (record.pid, record.boot_id) == (c.pid, boot_id())
            assert record.started(start_time(c.pid)), (record, start_time(c.pid))
        else:
            assert record is None and list(runtime.iterdir()) == []
        assert fresh.recoverable() == [] and await fresh.recover("p") is None  # never recovered
        assert czr.cleanup_orphans() == []  # its own container: spared
        await c.kill(0)
        await c.wait()
        assert journal() == {}

        # Detached (an agent restarting on purpose): the record stays for the next agent process's cleanup.
        d = await czr.launch(sandbox("d"))
        await czr.detach()
        assert list(journal()) == (["d"] if isolation == "posix" else [])
        assert fresh.cleanup_orphans() == ["d"]
        await poll(lambda: gone(d.pid), what="the detached task to die")
        with contextlib.suppress(ChildProcessError):
            os.waitpid(d.pid, 0)  # (it was this process's child)
        assert list(runtime.iterdir()) == []
    finally:
        await czr.shutdown()
        await fresh.shutdown()
    assert [m / root for m in _cgroup_mounts() if (m / root).exists()] == []


def test_pid_journal(tmp_path: Path) -> None:
    """Appends, ends, a torn line, periodic compaction that keeps what others recorded, removal when empty."""
    path = tmp_path / rt.JOURNAL
    other = rt.PidJournal(path)
    other.add("theirs", 7, (10, 11), "boot")
    journal = rt.PidJournal(path, compact_after=4)
    journal.add("a b", 42, (100, 101), "")  # a container id may hold spaces; a boot id may be unknown
    with open(path, "ab") as f:
        f.write(b"+ 43 100\n")  # torn (a crash in the middle of a line): skipped
    assert sorted(rt.read_journal(path)) == ["a b", "theirs"]
    record = rt.read_journal(path)["a b"]
    assert (record.pid, record.start_time, record.start_time_max, record.boot_id) == (42, 100, 101, "")
    for i in range(3):
        journal.add(f"c{i}", 50 + i, (1, 2), "boot")
        journal.end(f"c{i}")
    assert len(path.read_bytes().splitlines()) > 3
    journal.add("c3", 53, (1, 2), "boot")
    journal.end("c3")  # the 4th end: rewritten with the live records only, theirs included
    assert sorted(path.read_bytes().splitlines()) == [b"+ 42 100 101 - a b", b"+ 7 10 11 boot theirs"]
    other.end("theirs")  # written to the new journal, not the replaced one
    journal.end("a b")
    assert rt.read_journal(path) == {}
    journal.rewrite(rt.read_journal(path))
    assert not path.exists()
    other.close()


async def test_detach_then_recover_in_process(tmp_path: Path) -> None:
    root = f"{TEST_PARENT}/{uuid.uuid4().hex[:12]}"
    (tmp_path / "s").mkdir()
    spec = LaunchSpec(
        "d1", wait_for_go("exit 5"), ENV, tmp_path / "s", tmp_path / "s" / "o", tmp_path / "s" / "e", checkpoint=True
    )
    first = Containerizer(root, runtime_dir=tmp_path / "rt")
    c = await first.launch(spec)
    await first.detach()
    assert not gone(c.pid)
    second = Containerizer(root, runtime_dir=tmp_path / "rt")
    try:
        again = await second.recover("d1")
        assert again is not None and again.recovered
        assert await second.recover("d1") is again
        with pytest.raises(Exception, match="still running"):
            second.release("d1")
        (tmp_path / "s" / "go").touch()
        assert (await asyncio.wait_for(again.wait(), 5)).exit_code == 5
        # The detached wrapper was this process's child: reap it.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(c.pid, 0)
    finally:
        await second.shutdown()
    assert not (tmp_path / "rt" / "d1").exists()
    assert [m / root for m in _cgroup_mounts() if (m / root).exists()] == []


async def test_checkpoint_needs_a_runtime_dir(tmp_path: Path) -> None:
    czr = Containerizer(f"{TEST_PARENT}/{uuid.uuid4().hex[:12]}", isolation="posix")
    spec = LaunchSpec("x", ["true"], ENV, tmp_path, tmp_path / "o", tmp_path / "e", checkpoint=True)
    with pytest.raises(Exception, match="runtime_dir"):
        await czr.launch(spec)
    assert await czr.recover("x") is None and czr.recoverable() == []
    await czr.shutdown()


async def test_recorded_start_time_brackets_the_real_one(tmp_path: Path) -> None:
    from mesos_agent.containerizer._procfs import start_time

    czr = Containerizer(f"{TEST_PARENT}/{uuid.uuid4().hex[:12]}", isolation="posix", runtime_dir=tmp_path / "rt")
    try:
        for i in range(20):
            (tmp_path / f"s{i}").mkdir()
            s = tmp_path / f"s{i}"
            c = await czr.launch(LaunchSpec(f"c{i}", ["sleep", "30"], ENV, s, s / "o", s / "e", checkpoint=True))
            record = rt.read_record(tmp_path / "rt" / f"c{i}")
            assert record is not None and record.pid == c.pid
            assert record.started(start_time(c.pid)), (record, start_time(c.pid))
        record = rt.LaunchRecord("x", 1, 100, "", [], "/", "/o", "/e", start_time_max=101)
        assert [record.started(t) for t in (None, 99, 100, 101, 102)] == [False, False, True, True, False]
        exact = rt.LaunchRecord("x", 1, 100, "", [], "/", "/o", "/e")
        assert [exact.started(t) for t in (99, 100, 101)] == [False, True, False]
    finally:
        await czr.shutdown()


def test_status_decoding(tmp_path: Path) -> None:
    assert [rt.decode_status(s) for s in (0, 7, 125, 128, 137, 143, 192, 193, 255)] == [
        0, 7, 125, 128, -9, -15, -64, 193, 255,
    ]  # fmt: skip
    f = tmp_path / "status"
    assert rt.read_status(f) is None
    for text, value in (("7\n", 7), ("", None), ("x", None), ("300", None), ("-1", None), (" 143 \n", 143)):
        f.write_text(text)
        assert rt.read_status(f) == value, text


def test_recover_on_uvloop(tmp_path: Path) -> None:
    """The daemon runs on uvloop: an adopted wrapper (not our child) is watched through its pidfd there too."""
    import uvloop

    host = Host(tmp_path, "posix")
    pids = host.first_agent({"u": wait_for_go("exit 6"), "v": ["sleep", "60"]})

    async def main() -> None:
        czr = host.containerizer()
        try:
            u, v = (await czr.recover_all(["u", "v"])).values()
            assert u is not None and v is not None and not u.done
            (host.sandbox("u") / "go").touch()
            assert (await asyncio.wait_for(u.wait(), 5)).exit_code == 6
            await v.kill(2.0)
            assert (await v.wait()).signal == signal.SIGTERM
        finally:
            await czr.shutdown()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    assert all(gone(p) for p in pids.values())
    assert not any((host.runtime_dir / c).exists() for c in ("u", "v"))
