"""Light frameworks for bench.scale: N frameworks over a few gRPC channels, each a Subscribe stream that declines
every offer it gets with a refusal filter (`--refuse-seconds`), so that the master's allocator keeps working for
all of them at every cycle the filters expire. Each suppresses its offers once subscribed and revives on SIGUSR1
(all at once), so that the subscriptions are not held up by the offer churn they make. Prints a JSON line a
second: subscribed, offers, declined.

    python -m bench.scale_frameworks --master HOST:PORT --config aiomesos.toml --count 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
from pathlib import Path

import grpc

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import scheduler_pb2_grpc
from scheduler_sdk.channels import open_channel
from scheduler_sdk.security.config import ClientConfig

LIGHT_PREFIX = "light-"
FRAMEWORKS_PER_CHANNEL = 100
SUBSCRIBE_CONCURRENCY = 32
Call = spb.Call
Event = spb.Event


class LightFrameworks:
    def __init__(self, master: str, config: ClientConfig | None, count: int, refuse_seconds: float) -> None:
        self.master = master
        self.config = config
        self.count = count
        self.refuse_seconds = refuse_seconds
        self.subscribed = 0
        self.offers = 0
        self.declined = 0
        self.errors = 0
        self._slots = asyncio.Semaphore(SUBSCRIBE_CONCURRENCY)
        self.go = asyncio.Event()  # revive: every framework takes offers from now on

    def stats(self) -> dict[str, int]:
        return {
            "frameworks": self.count,
            "subscribed": self.subscribed,
            "offers": self.offers,
            "declined": self.declined,
            "errors": self.errors,
        }

    async def run(self) -> None:
        channels = [
            open_channel(self.master, self.config, master=True)
            for _ in range(max(1, math.ceil(self.count / FRAMEWORKS_PER_CHANNEL)))
        ]
        try:
            async with asyncio.TaskGroup() as tg:
                for i in range(self.count):
                    tg.create_task(self._framework(channels[i % len(channels)], i))
        finally:
            for channel in channels:
                await channel.close(grace=None)

    async def _framework(self, channel: grpc.aio.Channel, index: int) -> None:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        info = rpb.FrameworkInfo(name=f"{LIGHT_PREFIX}{index}", failover_timeout=0)
        async with self._slots:
            call = stub.Subscribe()
            await call.write(Call(type=Call.SUBSCRIBE, subscribe=Call.Subscribe(framework_info=info)))
            first = await call.read()
        if first is grpc.aio.EOF or first.type != Event.SUBSCRIBED:
            self.errors += 1
            return
        framework_id = first.subscribed.framework_id
        self.subscribed += 1
        filters = spb.Filters(refuse_seconds=self.refuse_seconds)
        await call.write(Call(framework_id=framework_id, type=Call.SUPPRESS))
        writing = asyncio.Lock()  # one write at a time on a stream: the reviver's and the declines
        reviver = asyncio.create_task(self._revive(call, framework_id, writing))
        try:
            while True:
                event = await call.read()
                if event is grpc.aio.EOF:
                    return
                if event.type == Event.OFFERS:
                    ids = [o.id for o in event.offers.offers]
                    self.offers += len(ids)
                    decline = Call.Decline(offer_ids=ids, filters=filters)
                    async with writing:
                        await call.write(Call(framework_id=framework_id, type=Call.DECLINE, decline=decline))
                    self.declined += len(ids)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as e:
            self.errors += 1
            if self.errors <= 3:
                print(f"framework {index}: {e!r}"[:500], file=sys.stderr, flush=True)
        finally:
            reviver.cancel()
            self.subscribed -= 1

    async def _revive(self, call: grpc.aio.StreamStreamCall, framework_id: str, writing: asyncio.Lock) -> None:
        await self.go.wait()
        async with writing:
            await call.write(Call(framework_id=framework_id, type=Call.REVIVE))


async def _main(args: argparse.Namespace) -> None:
    config = ClientConfig.load(args.config) if args.config else None
    frameworks = LightFrameworks(args.master, config, args.count, args.refuse_seconds)

    async def show() -> None:
        while True:
            await asyncio.sleep(1.0)
            print(json.dumps(frameworks.stats()), flush=True)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, frameworks.go.set)
    shower = asyncio.create_task(show())
    try:
        await frameworks.run()
    finally:
        shower.cancel()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scale_frameworks")
    p.add_argument("--master", required=True)
    p.add_argument("--config", type=Path, default=None, help="a client config (an operator's or a framework's)")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--refuse-seconds", type=float, default=5.0)
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
