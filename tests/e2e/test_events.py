"""The operator event stream against a real, secure cluster: a watcher sees a framework come and go, its task
launched and FINISHED, offers made, quota and weights change, an agent attach, drain and leave; a framework's
principal sees only its own; `aiomesos events` prints it as JSON lines; SIGTERM ends a stream UNAVAILABLE."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from aiomesos.v1 import events_pb2 as epb
from aiomesos.v1 import operator_pb2_grpc
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.security.local import LocalCertificates
from tests.conftest import module_tmp_path
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import Recorder, eventually, framework, master_channel, module_cluster_of, task
from tests.e2e.test_cli import aiomesos_here

pytestmark = [pytest.mark.e2e]
E = epb.OperatorEvent


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, cluster_ca: LocalCertificates) -> Iterator[LocalCluster]:
    """One agent to start with (a test adds a second, drains it and marks it gone; another adds a third and
    kills it: it is unreachable a second later)."""
    work_dir = module_tmp_path(tmp_path_factory, "events")
    master_flags = [*FAST_MASTER, "--agent-unreachable-timeout", "1"]
    c = LocalCluster(work_dir, agents=1, master_flags=master_flags, agent_flags=list(FAST_AGENT))
    yield from module_cluster_of(c)


class Watcher:
    """Everything one subscription received, collected in the background."""

    def __init__(self, client: OperatorClient) -> None:
        self.snapshot: epb.EventSnapshot | None = None
        self.events: list[epb.OperatorEvent] = []
        self._task = asyncio.ensure_future(self._collect(client))

    async def _collect(self, client: OperatorClient) -> None:
        async for batch in client.subscribe():
            for event in batch:
                if event.type == E.SNAPSHOT:
                    self.snapshot = event.snapshot
                else:
                    self.events.append(event)

    async def started(self) -> epb.EventSnapshot:
        return await eventually(lambda: self._failed() or self.snapshot, what="the snapshot")

    async def seen(
        self, what: str, match: Callable[[epb.OperatorEvent], bool], after: epb.OperatorEvent | None = None
    ) -> epb.OperatorEvent:
        """The first event that matches (after `after`, when given), once it has come."""

        def found() -> epb.OperatorEvent | None:
            self._failed()
            start = next(i + 1 for i, e in enumerate(self.events) if e is after) if after is not None else 0
            return next((e for e in self.events[start:] if match(e)), None)

        return await eventually(found, what=what)

    def _failed(self) -> None:
        if self._task.done():
            self._task.result()
            raise AssertionError("the event stream ended")

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def watching(cluster: LocalCluster, config: ClientConfig | None = None) -> AsyncIterator[Watcher]:
    async with OperatorClient(cluster.master_address, config=config) as client:
        watcher = Watcher(client)
        try:
            await watcher.started()
            yield watcher
        finally:
            await watcher.close()


def is_type(kind: int, **fields: object) -> Callable[[epb.OperatorEvent], bool]:
    return lambda e: e.type == kind and all(_field(e, path) == value for path, value in fields.items())


def _field(message: object, path: str) -> object:
    for name in path.split("__"):
        message = getattr(message, name)
    return message


async def run_one(driver: object, recorder: Recorder, task_id: str) -> None:
    offer = await recorder.next_offer()
    driver.launch(offer.id, [task(task_id, "true", offer.agent_id)])  # type: ignore[attr-defined]
    await recorder.wait_state(task_id, {tpb.TASK_FINISHED})


async def test_a_framework_its_task_offers_quota_and_weights(watched: LocalCluster) -> None:
    async with watching(watched) as w:
        assert [a.agent_info.hostname for a in w.snapshot.agents if a.active] == ["agent0.local"]  # type: ignore[union-attr]
        recorder = Recorder()
        async with framework(watched.master_address, recorder, name="watched") as driver:
            fid = driver.framework_id
            added = await w.seen("FRAMEWORK_ADDED", is_type(E.FRAMEWORK_ADDED, framework__framework_info__id=fid))
            assert added.framework.connected and added.framework.framework_info.name == "watched"
            await run_one(driver, recorder, "watched-1")
            made = await w.seen("OFFERS_MADE", is_type(E.OFFERS_MADE, offers__framework_id=fid))
            assert made.offers.offers >= 1 and Resources.from_proto(made.offers.resources).scalar("cpus") > 0
            launched = await w.seen("TASK_ADDED", is_type(E.TASK_ADDED, task__task__task_id="watched-1"))
            assert launched.task.framework_id == fid and launched.task.agent_id
            done = await w.seen(
                "TASK_UPDATED to FINISHED",
                is_type(E.TASK_UPDATED, task_update__task_id="watched-1", task_update__state=tpb.TASK_FINISHED),
            )
            assert (done.task_update.framework_id, done.task_update.agent_id) == (fid, launched.task.agent_id)
            assert done.task_update.status.timestamp > 0
        removed = await w.seen("FRAMEWORK_REMOVED", is_type(E.FRAMEWORK_REMOVED, framework__framework_info__id=fid))
        assert not removed.framework.active
        async with OperatorClient(watched.master_address) as client:
            await client.update_weights({"watched": 2.5})
            await client.set_quota("watched", Resources.parse("cpus:0.5"), None)
            await client.remove_quota("watched")
        weights = await w.seen("WEIGHTS_UPDATED", is_type(E.WEIGHTS_UPDATED))
        assert dict(weights.weights) == {"watched": 2.5}
        await w.seen("QUOTA_UPDATED", is_type(E.QUOTA_UPDATED, quota__role="watched", quota__removed=False))
        await w.seen("quota removed", is_type(E.QUOTA_UPDATED, quota__role="watched", quota__removed=True))


async def test_an_agent_attaches_drains_and_is_gone(watched: LocalCluster) -> None:
    async with watching(watched) as w:
        watched.add_agent()
        hostname = "agent1.local"
        added = await w.seen("AGENT_ADDED", is_type(E.AGENT_ADDED, agent__agent_info__hostname=hostname))
        agent_id = added.agent.agent_info.id
        assert added.agent.active and Resources.from_proto(added.agent.total).scalar("cpus") > 0
        async with OperatorClient(watched.master_address) as client:
            await client.drain_agent(agent_id, mark_gone=True)
        await w.seen("AGENT_DRAINING", is_type(E.AGENT_DRAINING, agent__agent_info__id=agent_id))
        removed = await w.seen("AGENT_REMOVED", is_type(E.AGENT_REMOVED, agent__agent_info__id=agent_id))
        assert removed.agent.removed and "marked gone" in removed.message
    await watched.agent_daemons[1].stop()  # told to shut down: it has, or does now


async def test_a_killed_agent_detaches_then_is_unreachable(watched: LocalCluster) -> None:
    async with watching(watched) as w:
        daemon = watched.add_agent()
        added = await w.seen("AGENT_ADDED", is_type(E.AGENT_ADDED, agent__agent_info__hostname="agent2.local"))
        agent_id = added.agent.agent_info.id
        daemon.signal(signal.SIGKILL)
        await daemon.wait(10)
        detached = await w.seen("AGENT_UPDATED", is_type(E.AGENT_UPDATED, agent__agent_info__id=agent_id))
        assert not detached.agent.active
        gone = await w.seen("AGENT_UNREACHABLE", is_type(E.AGENT_UNREACHABLE, agent__agent_info__id=agent_id))
        assert gone.agent.HasField("unreachable_time") and "did not re-attach" in gone.message
        # It comes back (and cleans up after itself when the cluster stops it).
        watched.add_agent(watched.agent_daemons.index(daemon))
        again = await w.seen("AGENT_ADDED again", is_type(E.AGENT_ADDED, agent__agent_info__id=agent_id), after=gone)
        assert again.agent.active and not again.agent.HasField("unreachable_time")


async def test_a_framework_principal_sees_only_its_own(watched: LocalCluster, cluster_ca: LocalCertificates) -> None:
    ml = cluster_ca.client_config(watched.master_address, name="ml", role="framework")
    ads = cluster_ca.client_config(watched.master_address, name="ads", role="framework")
    async with watching(watched) as everything, watching(watched, ml) as mine:
        frameworks = {}
        for name, config in (("ml", ml), ("ads", ads)):
            recorder = Recorder()
            async with framework(watched.master_address, recorder, name=name, config=config) as driver:
                frameworks[name] = driver.framework_id
                await run_one(driver, recorder, f"{name}-1")
        for name in ("ml", "ads"):
            await everything.seen(f"{name}'s task", is_type(E.TASK_UPDATED, task_update__task_id=f"{name}-1"))
        await mine.seen("ml's task", is_type(E.TASK_UPDATED, task_update__task_id="ml-1"))
        ids = {e.framework.framework_info.id or e.task.framework_id or e.task_update.framework_id for e in mine.events}
        assert frameworks["ml"] in ids and frameworks["ads"] not in ids
        assert any(e.type == E.OFFERS_MADE for e in mine.events)  # its own offers
        assert all(e.offers.framework_id == frameworks["ml"] for e in mine.events if e.type == E.OFFERS_MADE)
    async with watching(watched, ml) as later:
        assert later.snapshot is not None
        shown = {f.framework_info.id for f in later.snapshot.frameworks}
        assert frameworks["ml"] in shown and frameworks["ads"] not in shown
        assert {t.framework_id for t in later.snapshot.tasks} == {frameworks["ml"]}
        assert later.snapshot.agents  # agents are the cluster's: everyone sees them


def test_aiomesos_events_prints_the_snapshot_and_exits(watched: LocalCluster) -> None:
    code, out, err = aiomesos_here("events", "--master", watched.master_address, "--json")
    assert code == 0, err
    [line] = out.splitlines()
    snapshot = json.loads(line)
    assert snapshot["type"] == "SNAPSHOT" and snapshot["snapshot"]["agents"][0]["agent_info"]["hostname"]
    code, out, err = aiomesos_here("events", "--master", watched.master_address)
    assert code == 0, err
    assert "SNAPSHOT" in out and "agents (" in out and len(out.splitlines()) == 1


async def test_aiomesos_events_follow_json(watched: LocalCluster) -> None:
    cli = [sys.executable, "-m", "scheduler_sdk", "events", "--master", watched.master_address, "--follow", "--json"]
    follow = await asyncio.create_subprocess_exec(*cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert follow.stdout is not None
    try:
        async with asyncio.timeout(30):
            assert json.loads(await follow.stdout.readline())["type"] == "SNAPSHOT"
            async with OperatorClient(watched.master_address) as client:
                await client.update_weights({"json": 4.0})
            while (event := json.loads(await follow.stdout.readline()))["type"] != "WEIGHTS_UPDATED":
                pass
        assert event["weights"] == {"json": 4.0} and event["time"] > 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            follow.terminate()
        await follow.wait()


async def test_sigterm_ends_the_stream_unavailable_and_the_master_at_once(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, agents=0)
    try:
        await cluster.start()
        async with master_channel(cluster.master_address) as channel:
            call = operator_pb2_grpc.OperatorStub(channel).Subscribe(epb.SubscribeRequest())
            async with asyncio.timeout(10):
                first = await call.read()
                assert first.events[0].type == E.SNAPSHOT
                assert cluster.master is not None
                started = time.monotonic()
                exit_code = await cluster.master.stop()
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    while await call.read() is not grpc.aio.EOF:
                        pass
        assert exit_code == 0 and time.monotonic() - started < 4.0
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "the master is stopping" in (ended.value.details() or "")
    finally:
        await cluster.stop()
