"""`python -m bench.events`: the events per second the operator event stream sustains to 10 watchers.

The master's core, dispatcher, event hub and Operator servicer run in this process, served by a real gRPC
server on loopback (mutual TLS from a local CA, as a secure cluster serves; `--plaintext` for none); the
watchers run in a process of their own, each a real Subscribe stream through `OperatorClient.subscribe`,
decoding every message. The load is the core's own: --tasks tasks on one agent, and rounds of RUNNING status
updates for --batch of them at a time (as health checks make them: each a new update, so each a TASK_UPDATED),
one agent message and one outbox drain a round. Rounds go as fast as the slowest watcher keeps up (a round
waits while a watcher is more than a round behind: sustained, no one dropped) for --seconds; the figure is the
events every watcher received per second, from the first round until the last watcher has them all (the
median of --rounds runs). Also: each batch's lag from the master's event time to its receipt (p50, p99), the
stream messages per second, the hub alone (publish to the same number of in-process subscriptions, no gRPC)
for what the wire costs, and what a status update costs the core with and without a watcher (with none, the
core builds no events at all).

    python -m bench.events [--watchers 1,10] [--seconds 5] [--batch 200] [--tasks 1000] [--rounds 3] [--plaintext]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from aiomesos.v1 import agent_pb2, operator_pb2_grpc, scheduler_pb2
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from bench.common import percentile, report
from mesos_master.allocator import HierarchicalAllocator
from mesos_master.api.dispatch import Dispatcher
from mesos_master.api.operator import OperatorService
from mesos_master.cluster import Master
from mesos_master.events import EventHub
from mesos_master.outbox import Published
from mesos_master.registry.memory import MemoryRegistry
from scheduler_sdk._daemon.guard import Guard
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.acls import Authorizer
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.security.local import LocalCertificates
from scheduler_sdk.security.tls import ServerTLS

TASK = Resources.of(cpus=0.01, mem=1)


# ------------------------------------------------------------------------------------------ the master side
def _loaded_master(tasks: int) -> tuple[Master, str, str, list[str]]:
    """A core with one agent and one framework running `tasks` tasks (as the core knows them)."""
    master = Master("bench", HierarchicalAllocator(allocation_interval=1.0))
    info = rpb.AgentInfo(hostname="bench", resources=Resources.parse(f"cpus:{tasks};mem:{tasks * 2}").to_proto())
    agent_id = master.register_agent(agent_pb2.AgentMessage.Register(agent_info=info))
    framework_id = master.subscribe(rpb.FrameworkInfo(name="bench"))
    master.allocate()
    [offer] = [o for e in master.outbox.drain().to_frameworks[framework_id] for o in e.offers.offers]
    infos = [
        tpb.TaskInfo(
            task_id=f"t{i:05}",
            name="bench",
            agent_id=agent_id,
            resources=TASK.to_proto(),
            command=rpb.CommandInfo(value="true", shell=True),
        )
        for i in range(tasks)
    ]
    launch = scheduler_pb2.Offer_Operation.Launch(task_infos=infos)
    operation = scheduler_pb2.Offer_Operation(type=scheduler_pb2.Offer_Operation.LAUNCH, launch=launch)
    master.accept(framework_id, scheduler_pb2.Call.Accept(offer_ids=[offer.id], operations=[operation]))
    master.outbox.drain()
    assert len(master.frameworks[framework_id].tasks) == tasks, "the bench's tasks were not launched"
    return master, agent_id, framework_id, [t.task_id for t in infos]


def _updates(framework_id: str, agent_id: str, task_ids: Sequence[str], n: int) -> list[Any]:
    now = time.time()
    return [
        agent_pb2.AgentMessage.StatusUpdate(
            framework_id=framework_id,
            status=tpb.TaskStatus(
                task_id=task_id,
                state=tpb.TASK_RUNNING,
                uuid=f"{n}-{task_id}".encode(),
                agent_id=agent_id,
                source=tpb.TaskStatus.SOURCE_EXECUTOR,
                timestamp=now,
                message="healthy",
            ),
        )
        for task_id in task_ids
    ]


async def stream_run(watchers: int, seconds: float, batch: int, tasks: int, tls: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aiomesos-bench-events-") as tmp:
        return await _stream_run(watchers, seconds, batch, tasks, Path(tmp) if tls else None)


async def _stream_run(watchers: int, seconds: float, batch: int, tasks: int, certs: Path | None) -> dict[str, Any]:
    master, agent_id, framework_id, task_ids = _loaded_master(tasks)
    dispatcher = Dispatcher(master, MemoryRegistry())
    service = OperatorService(dispatcher, Guard(Authorizer(), secure=False), ClientConfig())
    server = grpc.aio.server()
    operator_pb2_grpc.add_OperatorServicer_to_server(service, server)
    config = certs / "client.toml" if certs is not None else None
    if certs is not None and config is not None:
        local = LocalCertificates(certs)
        cert, key = local.issue("bench", "master")
        port = server.add_secure_port("127.0.0.1:0", ServerTLS(cert, key, local.ca_cert).credentials())
        local.client_config().write(config)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.events",
        "--watch",
        f"127.0.0.1:{port}",
        "--watch-config",
        str(config or ""),
        "--watchers",
        str(watchers),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=os.environ.copy(),
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            assert (await proc.stdout.readline()).strip() == b"ready"
        hub = dispatcher.hub
        published = rounds = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            chosen = [task_ids[(rounds * batch + i) % len(task_ids)] for i in range(batch)]
            master.status_updates(agent_id, _updates(framework_id, agent_id, chosen, rounds))
            await dispatcher.flush()
            published += batch
            rounds += 1
            while hub.behind > batch:
                await asyncio.sleep(0.0005)
        proc.stdin.write(f"{published}\n".encode())
        await proc.stdin.drain()
        async with asyncio.timeout(120):
            done = json.loads(await proc.stdout.readline())
        elapsed = time.perf_counter() - start
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        dispatcher.stop()
        await server.stop(None)
    return {
        "watchers": watchers,
        "tls": certs is not None,
        "events": published,
        "rounds": rounds,
        "events_per_second": round(published / elapsed),
        "events_per_second_all_watchers": round(published * watchers / elapsed),
        "messages_per_second_all_watchers": round(done["messages"] / elapsed),
        "lag_ms_p50": round(percentile(done["lags"], 50) * 1000, 1),
        "lag_ms_p99": round(percentile(done["lags"], 99) * 1000, 1),
        "watchers_dropped": hub.dropped,
        "received_all": done["received_all"],
    }


def hub_run(watchers: int, events: int, batch: int) -> dict[str, Any]:
    """The hub alone: `events` published in drains of `batch` to `watchers` subscriptions, each taken out."""
    from aiomesos.v1 import events_pb2 as epb

    async def run() -> float:
        hub = EventHub(lambda visible: epb.EventSnapshot(), max_pending=events + 1)
        subs = [hub.subscribe(None) for _ in range(watchers)]
        drain = [
            Published(
                epb.OperatorEvent(
                    type=epb.OperatorEvent.TASK_UPDATED,
                    task_update=epb.EventTaskUpdate(task_id=f"t{i}", state=tpb.TASK_RUNNING),
                ),
                "framework/x",
            )
            for i in range(batch)
        ]
        start = time.perf_counter()
        for _ in range(events // batch):
            hub.publish(drain)
            for sub in subs:
                while sub.pending:
                    await anext(sub)
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    return {"watchers": watchers, "events_per_second": round(events // batch * batch / elapsed)}


def core_overhead(tasks: int, batch: int, rounds: int) -> dict[str, Any]:
    """What the stream costs the core itself: a status update (applied, and its drain), with nobody watching
    (no event is built) and with a watcher (its TASK_UPDATED built and drained); the two alternate, five
    times each, and the best of each is kept (this VM's speed drifts: alternating weighs on both alike)."""
    master, agent_id, framework_id, task_ids = _loaded_master(tasks)
    best = {False: float("inf"), True: float("inf")}
    for attempt in range(10):
        watched = attempt % 2 == 1
        master.outbox.watched = watched
        updates = [
            _updates(framework_id, agent_id, task_ids[i * batch % tasks :][:batch], attempt * rounds + i)
            for i in range(rounds)
        ]
        start = time.perf_counter()
        for round_updates in updates:
            master.status_updates(agent_id, round_updates)
            master.outbox.drain()
        best[watched] = min(best[watched], (time.perf_counter() - start) / (rounds * batch))
    unwatched, watched = best[False], best[True]
    return {
        "update_us_unwatched": round(unwatched * 1e6, 1),
        "update_us_watched": round(watched * 1e6, 1),
        "watched_cost_pct": round(100 * (watched - unwatched) / unwatched, 1),
    }


# ------------------------------------------------------------------------------------------ the watchers' side
async def watch(address: str, watchers: int, config_path: str) -> None:
    config = ClientConfig.load(Path(config_path)) if config_path else ClientConfig()
    counts = [0] * watchers
    messages = [0]
    lags: list[float] = []
    ready = [asyncio.Event() for _ in range(watchers)]
    expected: list[int] = []
    all_in = asyncio.Event()

    async def one(i: int) -> None:
        async with OperatorClient(address, config=config) as client:
            async for batch in client.subscribe():
                if batch[0].type == batch[0].SNAPSHOT:
                    ready[i].set()
                    continue
                lags.append(time.time() - batch[-1].time)
                counts[i] += len(batch)
                messages[0] += 1
                if expected and min(counts) >= expected[0]:
                    all_in.set()

    tasks = [asyncio.ensure_future(one(i)) for i in range(watchers)]
    await asyncio.gather(*(r.wait() for r in ready))
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    expected.append(int(line))
    if min(counts) >= expected[0]:
        all_in.set()
    try:
        async with asyncio.timeout(90):
            await all_in.wait()
    except TimeoutError:
        pass
    print(json.dumps({"messages": messages[0], "lags": lags, "received_all": min(counts) >= expected[0]}), flush=True)
    for task in tasks:
        task.cancel()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--watchers", default="1,10", help="how many watchers, comma-separated runs")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--batch", type=int, default=200, help="status updates (events) per round")
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--plaintext", action="store_true", help="serve the stream without TLS")
    p.add_argument("--rounds", type=int, default=3, help="runs per watcher count; the median is kept")
    p.add_argument("--watch", default="", help=argparse.SUPPRESS)  # the watchers' process
    p.add_argument("--watch-config", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    counts = [int(n) for n in args.watchers.split(",") if n.strip()]
    if args.watch:
        asyncio.run(watch(args.watch, counts[0], args.watch_config))
        return
    runs = []
    for n in counts:
        rounds = [
            asyncio.run(stream_run(n, args.seconds, args.batch, args.tasks, not args.plaintext))
            for _ in range(max(1, args.rounds))
        ]
        rounds.sort(key=lambda r: r["events_per_second"])
        median = dict(rounds[len(rounds) // 2])
        median["events_per_second_all_rounds"] = [r["events_per_second"] for r in rounds]
        runs.append(median)
    hub = [hub_run(n, 100_000, args.batch) for n in counts]
    core = core_overhead(args.tasks, args.batch, 50)
    report("events", {"batch": args.batch, "tasks": args.tasks, "stream": runs, "hub_only": hub, "core": core})


if __name__ == "__main__":
    main()
