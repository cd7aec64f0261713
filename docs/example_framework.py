"""A complete aiomesos framework (see docs/writing-a-framework.md): it runs N tasks of
`echo hello from $MESOS_TASK_ID`, as many on each offer as fit, prints every status update, and tears itself
down once every task has ended.

    AIOMESOS_MASTER=127.0.0.1:5050 python docs/example_framework.py 5

Exit code: 0 when every task finished; 1 when one did not, or the master refused the framework (why, on stderr).
"""

import asyncio
import sys

from aiomesos.v1 import resources_pb2, tasks_pb2
from scheduler_sdk import TERMINAL_STATES, DriverError, Resources, Scheduler, SchedulerDriver, state_name, task_info

TASK = Resources.of(cpus=0.1, mem=32)  # what each task asks for
# failover_timeout: how long the master keeps our tasks while we are disconnected (0: not at all).
FRAMEWORK = resources_pb2.FrameworkInfo(name="hello-example", failover_timeout=60)


class Hello(Scheduler):
    def __init__(self, count):
        self.waiting = [f"hello-{i}" for i in range(count)]  # not launched yet
        self.states = dict.fromkeys(self.waiting)  # task id -> its latest state (None: no update yet)

    async def offers(self, driver, offers):
        for offer in offers:
            fit = Resources.from_proto(offer.resources).fit_count(TASK)
            launch, self.waiting = self.waiting[:fit], self.waiting[fit:]
            tasks = [task_info(offer, task_id, "echo hello from $MESOS_TASK_ID", TASK) for task_id in launch]
            driver.accept([offer.id], tasks, refuse_seconds=30)  # no tasks: a decline; what is left: away 30 s
        if not self.waiting:
            driver.suppress()  # no more offers until a revive()

    async def status_update(self, driver, status):
        self.states[status.task_id] = status.state
        print(status.task_id, state_name(status.state), status.message, flush=True)
        if all(state in TERMINAL_STATES for state in self.states.values()):
            driver.stop(teardown=True)  # the master forgets the framework; run() returns


if __name__ == "__main__":
    try:  # the master: "" is $AIOMESOS_MASTER, else the client config's (as for the aiomesos command)
        driver = SchedulerDriver("", FRAMEWORK, Hello(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
        asyncio.run(driver.run())
    except DriverError as e:
        sys.exit(f"example_framework: {e}")
    sys.exit(0 if all(state == tasks_pb2.TASK_FINISHED for state in driver.scheduler.states.values()) else 1)
