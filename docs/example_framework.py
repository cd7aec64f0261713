"""A minimal aiomesos framework, written against the SDK's low-level driver (see docs/writing-a-framework.md).

It runs N tasks of `echo hello from $MESOS_TASK_ID`, packs as many as fit onto each offer, declines offers
it cannot use (with a filter, so the master does not send them straight back), suppresses offers once
everything is launched, prints every status update, and tears itself down when all tasks have ended.

    python docs/example_framework.py --master 127.0.0.1:5050 --tasks 5

Exit code: 0 when every task finished, 1 when one did not, 2 when the master refused or could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import scheduler_pb2 as spb
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import DriverError, Scheduler, SchedulerDriver
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import TERMINAL_STATES as TERMINAL  # the task states a task never leaves

TASK_RESOURCES = Resources.of(cpus=0.1, mem=32)  # what each task asks for


class HelloScheduler(Scheduler):
    def __init__(self, count: int) -> None:
        self.to_launch = [f"hello-{i}" for i in range(count)]  # not yet sent to an agent
        self.states: dict[str, int] = {task_id: tpb.TASK_STAGING for task_id in self.to_launch}

    async def registered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        print(f"registered as framework {framework_id} with master {master_id}", flush=True)

    async def reregistered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        # Ask for the latest state of every launched, unfinished task: one the master never heard of (the
        # launch was lost with the connection) comes back as TASK_LOST.
        launched = [t for t, state in self.states.items() if state not in TERMINAL and t not in self.to_launch]
        driver.reconcile((task_id, "") for task_id in launched)

    async def offers(self, driver: SchedulerDriver, offers: Sequence[spb.Offer]) -> None:
        for offer in offers:
            free = Resources.from_proto(offer.resources)
            tasks = []
            while self.to_launch and free.contains(TASK_RESOURCES):
                free = free - TASK_RESOURCES
                task_id = self.to_launch.pop(0)
                tasks.append(
                    tpb.TaskInfo(
                        task_id=task_id,
                        name=task_id,
                        agent_id=offer.agent_id,
                        resources=TASK_RESOURCES.to_proto(),
                        command=rpb.CommandInfo(shell=True, value="echo hello from $MESOS_TASK_ID"),
                    )
                )
            if tasks:
                print(f"launching {len(tasks)} task(s) on {offer.hostname}", flush=True)
                driver.accept([offer.id], tasks, refuse_seconds=30)  # the unused rest: not back for 30 s
            else:
                driver.decline([offer.id], refuse_seconds=30)
        if not self.to_launch:
            driver.suppress()  # no more offers until a revive()

    async def status_update(self, driver: SchedulerDriver, status: tpb.TaskStatus) -> None:
        if status.task_id not in self.states:
            return
        self.states[status.task_id] = status.state
        extra = f" exit code {status.exit_code}" if status.HasField("exit_code") else ""
        extra += f" ({status.message})" if status.message and status.state != tpb.TASK_FINISHED else ""
        print(f"{status.task_id} {tpb.TaskState.Name(status.state)}{extra}", flush=True)
        if all(state in TERMINAL for state in self.states.values()):
            driver.stop(teardown=True)  # the master forgets the framework; run() returns

    def succeeded(self) -> bool:
        return all(state == tpb.TASK_FINISHED for state in self.states.values())


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--master",
        default="127.0.0.1:5050",
        help="the master: HOST:PORT, HOST:PORT,HOST:PORT or etcd://HOST:PORT/PREFIX",
    )
    parser.add_argument("--tasks", type=int, default=5, help="how many tasks to run")
    args = parser.parse_args()
    if args.tasks < 1:
        parser.error("--tasks must be at least 1")
    scheduler = HelloScheduler(args.tasks)
    # failover_timeout: how long the master keeps our tasks while we are disconnected (so that the driver's
    # reconnects find the framework still there); 0 would tear it down at the first hiccup.
    framework = rpb.FrameworkInfo(name="hello-example", failover_timeout=60)
    driver = SchedulerDriver(args.master, framework, scheduler, max_reconnect_attempts=5)
    try:
        await driver.run()
    except DriverError as e:
        print(f"example_framework: {e}", file=sys.stderr)
        return 2
    return 0 if scheduler.succeeded() else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
