"""The agent's safe defaults and its files API under attack, with real daemons: tasks with no user run as nobody,
root is refused unless the agent allows it, a hard link to /etc/passwd or a repointed `runs/latest` serves nothing
of the host, tasks whose ids once shared a directory each get their own stdout, and a task that writes past its
disk under `--enforce-disk` is stopped and reported."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import AgentClient, AgentError
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.local import LocalCertificates
from tests.conftest import module_tmp_path
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import Recorder, agent_state, agents, eventually, framework, task

pytestmark = [pytest.mark.e2e, pytest.mark.cgroups]
S = tpb.TaskStatus
TERMINAL = {tpb.TASK_KILLED, tpb.TASK_FAILED, tpb.TASK_FINISHED, tpb.TASK_LOST, tpb.TASK_ERROR}
NOBODY = pwd.getpwnam("nobody")


#: The master's ACLs here let anyone run tasks as anyone, root included: what these tests check is the agent's
#: own refusal, the last line of defence (the master's run_tasks ACL refuses root by default).
ANY_USER_ACLS = {"run_tasks": [{"principals": {"type": "ANY"}, "users": {"type": "ANY"}}], "permissive": True}


async def _cluster(tmp_path: Path, *flags: str) -> LocalCluster:
    tmp_path.mkdir(parents=True, exist_ok=True)
    acls = tmp_path / "acls.json"
    acls.write_text(json.dumps(ANY_USER_ACLS))
    c = LocalCluster(
        tmp_path,
        agents=1,
        master_flags=[*FAST_MASTER, "--acls", str(acls)],
        agent_flags=[*FAST_AGENT, *flags],
    )
    await c.start()
    return c


@pytest.fixture(scope="module")
def one_agent(tmp_path_factory: pytest.TempPathFactory, cluster_ca: LocalCertificates) -> Iterator[LocalCluster]:
    """One agent with the defaults: tasks as nobody, no root. One for the module: its tests' tasks end (or are
    killed) with them, each names its own, and none changes the agent."""
    c = asyncio.run(_cluster(module_tmp_path(tmp_path_factory, "defaults")))
    try:
        yield c
    finally:
        assert asyncio.run(c.stop()) == []


@pytest.fixture
async def root_allowed(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    # The GC's first pass is at the start only: the tests' tasks rearrange their sandboxes' layout.
    c = await _cluster(tmp_path / "root-allowed", "--allow-root-tasks", "--gc-interval", "3600")
    try:
        yield c
    finally:
        assert await c.stop() == []


def as_user(t: tpb.TaskInfo, user: str) -> tpb.TaskInfo:
    t.command.user = user
    return t


async def agent_address(cluster: LocalCluster) -> str:
    (agent,) = await agents(cluster.master_address)
    return str(agent.agent_info.address)


async def read(api: AgentClient, task_id: str, path: str) -> bytes:
    return b"".join([c.data async for c in api.read_file(task_id, path)])


def sandbox_of(cluster: LocalCluster, task_id: str) -> Path:
    (latest,) = cluster.agent_daemons[0].work_dir.glob(f"agents/*/frameworks/*/executors/{task_id}/runs/latest")
    return latest.resolve()


async def test_a_task_with_no_user_runs_as_nobody_in_a_sandbox_of_its_own(one_agent: LocalCluster) -> None:
    rec = Recorder()
    async with framework(one_agent.master_address, rec) as driver:
        offer = await rec.next_offer()
        # It reaches its sandbox by its path (the work dir chain is traversable) and may write there.
        who = 'id -u; id -un; echo mine > "$MESOS_SANDBOX/own" && cat "$MESOS_SANDBOX/own"'
        driver.accept([offer.id], [task("who", who, offer.agent_id)])
        s = await rec.wait_state("who", TERMINAL)
        assert s.state == tpb.TASK_FINISHED, s
        async with AgentClient(await agent_address(one_agent)) as api:
            out = (await read(api, "who", "stdout")).decode().split()
        assert out == [str(NOBODY.pw_uid), "nobody", "mine"], out
        assert out[0] != "0"
        st = sandbox_of(one_agent, "who").stat()
        assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
        assert (sandbox_of(one_agent, "who") / "stdout").stat().st_uid == NOBODY.pw_uid


async def test_root_is_refused_unless_the_agent_allows_it(one_agent: LocalCluster, root_allowed: LocalCluster) -> None:
    rec = Recorder()
    async with framework(one_agent.master_address, rec) as driver:
        offer = await rec.next_offer()
        tasks = [
            as_user(task("as-root", "id -u", offer.agent_id), "root"),
            as_user(task("as-ghost", "id -u", offer.agent_id), "no-such-user-xyz"),
        ]
        driver.accept([offer.id], tasks)
        refused = await rec.wait_state("as-root", TERMINAL)
        ghost = await rec.wait_state("as-ghost", TERMINAL)
    assert (refused.state, refused.reason) == (tpb.TASK_ERROR, S.REASON_TASK_UNAUTHORIZED), refused
    assert "root" in refused.message and "--allow-root-tasks" in refused.message, refused.message
    assert (ghost.state, ghost.reason) == (tpb.TASK_FAILED, S.REASON_CONTAINER_LAUNCH_FAILED), ghost
    assert "'no-such-user-xyz'" in ghost.message and "no such user" in ghost.message, ghost.message
    # Neither ever ran: no sandbox was made for them.
    assert not list(one_agent.agent_daemons[0].work_dir.glob("agents/*/frameworks/*/executors/as-*"))

    # An agent started with --allow-root-tasks runs it.
    rec = Recorder()
    async with framework(root_allowed.master_address, rec) as driver:
        offer = await rec.next_offer()
        driver.accept([offer.id], [as_user(task("as-root", "id -u", offer.agent_id), "root")])
        assert (await rec.wait_state("as-root", TERMINAL)).state == tpb.TASK_FINISHED
        async with AgentClient(await agent_address(root_allowed)) as api:
            assert await read(api, "as-root", "stdout") == b"0\n"


async def test_an_agent_refuses_a_root_default_user_without_allow_root(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, agents=0, master_flags=list(FAST_MASTER))
    await cluster.start()
    try:
        daemon = cluster.add_agent(0, ["--default-user", "root"])
        await eventually(lambda: not daemon.alive, what="the agent to refuse its flags")
        assert "needs --allow-root-tasks" in daemon.log_tail()
    finally:
        await cluster.stop()


async def test_a_hard_link_to_a_host_file_is_not_served(one_agent: LocalCluster) -> None:
    rec = Recorder()
    async with framework(one_agent.master_address, rec) as driver:
        offer = await rec.next_offer()
        driver.accept([offer.id], [task("linker", "echo hello; sleep 60", offer.agent_id)])
        await rec.wait_state("linker", {tpb.TASK_RUNNING})
        sandbox = sandbox_of(one_agent, "linker")
        # As a host without fs.protected_hardlinks would let the task do: /etc/passwd linked into its sandbox.
        os.link("/etc/passwd", sandbox / "passwd")
        # And a file its user may not read (put there by someone else).
        secret = sandbox / "secret"
        secret.write_text("root only")
        secret.chmod(0o600)
        async with AgentClient(await agent_address(one_agent)) as api:
            await eventually(lambda: read(api, "linker", "stdout"), what="the task's stdout")
            assert await read(api, "linker", "stdout") == b"hello\n"
            for path, why in (("passwd", "hard link to a file of uid 0"), ("secret", "may not read it")):
                with pytest.raises(AgentError) as refused:
                    await read(api, "linker", path)
                assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED, (path, str(refused.value))
                assert why in str(refused.value), str(refused.value)
        driver.kill("linker", offer.agent_id)
        await rec.wait_state("linker", TERMINAL)


async def test_a_root_task_repointing_its_layout_does_not_serve_the_host(
    tmp_path: Path, root_allowed: LocalCluster
) -> None:
    rec = Recorder()
    address = await agent_address(root_allowed)
    # What the swapped layout points at: as good as /, and nothing the test would mind losing.
    decoy = tmp_path / "decoy"
    (decoy / "etc").mkdir(parents=True)
    (decoy / "etc" / "passwd").write_text("host secrets")
    async with framework(root_allowed.master_address, rec) as driver:
        offer = await rec.next_offer()
        # cwd is runs/<container>: `latest` is its sibling. The other replaces the whole `runs` directory.
        repoint = "echo inside; ln -sfn / ../latest"
        swap = f"echo swapped; cd ../..; mv runs runs.old; ln -s {decoy} runs; sleep 60"
        driver.accept(
            [offer.id],
            [
                as_user(task("repoint", repoint, offer.agent_id), "root"),
                as_user(task("swap", swap, offer.agent_id), "root"),
            ],
        )
        assert (await rec.wait_state("repoint", TERMINAL)).state == tpb.TASK_FINISHED
        await rec.wait_state("swap", {tpb.TASK_RUNNING})
        work = root_allowed.agent_daemons[0].work_dir
        (latest,) = work.glob("agents/*/frameworks/*/executors/repoint/runs/latest")
        assert os.readlink(latest) == "/"
        await eventually(
            lambda: any(p.is_symlink() for p in work.glob("agents/*/frameworks/*/executors/swap/runs")),
            what="the swap task to replace its runs directory",
        )

        async def forgotten() -> bool:
            return all(t.task.task_id != "repoint" for t in (await agent_state(address)).tasks)

        await eventually(forgotten, what="the agent to forget the finished task")  # type: ignore[arg-type]
        async with AgentClient(address) as api:
            # Found on disk, not through `latest`: its own sandbox, nothing of /.
            names = [f.path for f in await api.list_files("repoint")]
            assert names == ["stderr", "stdout"], names
            assert await read(api, "repoint", "stdout") == b"inside\n"
            with pytest.raises(AgentError) as missing:
                await read(api, "repoint", "etc/passwd")
            assert missing.value.code == grpc.StatusCode.NOT_FOUND, str(missing.value)
            # A held task whose layout was swapped for a link to /: refused, not followed.
            for call in (api.list_files("swap"), read(api, "swap", "etc/passwd")):
                with pytest.raises(AgentError) as refused:
                    await call
                assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED, str(refused.value)
                assert "not where the agent made it" in str(refused.value), str(refused.value)
        driver.kill("swap", offer.agent_id)
        await rec.wait_state("swap", TERMINAL)


async def test_task_ids_that_once_shared_a_sandbox_each_have_their_own(one_agent: LocalCluster) -> None:
    # `a:b` and `a_b` (and `.b` and `b`) were one directory name: the files API served one's stdout for the other.
    ids = ["a:b", "a_b", ".b", "b"]
    rec = Recorder()
    async with framework(one_agent.master_address, rec) as driver:
        offer = await rec.next_offer()
        driver.accept([offer.id], [task(i, f"echo 'I am {i}'", offer.agent_id, cpus=0.05) for i in ids])
        for i in ids:
            assert (await rec.wait_state(i, TERMINAL)).state == tpb.TASK_FINISHED
        async with AgentClient(await agent_address(one_agent)) as api:
            for i in ids:
                assert await read(api, i, "stdout") == f"I am {i}\n".encode(), i
    executors = one_agent.agent_daemons[0].work_dir.glob(f"agents/*/frameworks/{driver.framework_id}/executors/*")
    assert sorted(p.name for p in executors) == sorted(["a%3Ab", "a_b", ".b", "b"])


async def test_a_task_writing_past_its_disk_is_stopped_with_enforce_disk(tmp_path: Path) -> None:
    # A slow poll: the file size limit stops the write, not the poll.
    cluster = await _cluster(tmp_path, "--enforce-disk", "--disk-poll-interval", "30")
    try:
        rec = Recorder()
        async with framework(cluster.master_address, rec) as driver:
            offer = await rec.next_offer()
            hog = task("hog", "head -c 50000000 /dev/zero > big", offer.agent_id)
            hog.ClearField("resources")
            hog.resources.extend(Resources.of(cpus=0.1, mem=32, disk=10).to_proto())
            driver.accept([offer.id], [hog])
            s = await rec.wait_state("hog", TERMINAL, timeout=30)
        assert (s.state, s.reason) == (tpb.TASK_FAILED, S.REASON_CONTAINER_LIMITATION_DISK), s
        assert "disk limit 10 MiB exceeded" in s.message and "SIGXFSZ" in s.message, s.message
        big = next(cluster.agent_daemons[0].work_dir.glob("agents/*/frameworks/*/executors/hog/runs/*/big"))
        assert big.stat().st_size <= 10 * 1024 * 1024 + 512
    finally:
        assert await cluster.stop() == []
