"""Launch task processes under cgroup (v1 or v2) isolation, or as plain posix processes; recover them.

Typical use by the agent::

    czr = Containerizer(f"aiomesos/agent-{agent_id}", runtime_dir=work_dir / "containers")
    if czr.warning:
        log.warning(czr.warning)
    # After a restart: re-adopt the checkpointed containers the agent still knows, kill the rest.
    recovered = await czr.recover_all(known_container_ids)   # id -> Container | None
    czr.cleanup_orphans()
    container = await czr.launch(LaunchSpec(..., checkpoint=True))
    # A COMMAND health check runs inside the task's container (cgroups, user, namespaces):
    check = await container.exec(["/bin/sh", "-c", "test -f ready"])
    healthy = await check.wait() == 0
    termination = await container.wait()
    # ... once the terminal status update is checkpointed:
    czr.release(container.container_id)

The isolation itself is a set of isolators (``isolators/``), one object per concern (``cgroups/cpu``,
``cgroups/mem``, ``disk/du``, ...), composed by ``_isolation`` from ``--isolation`` and what the host offers.
Pollers run as background tasks the Containerizer owns (``spawn=`` / ``set_spawn`` lend it the agent's
TaskGroup) and cancels on shutdown.
"""

from ._container import Container
from ._containerizer import KNOWN_ISOLATORS, Containerizer
from ._delegation import CGROUPS_PARENTS
from ._process import ExecProcess
from ._tasks import Spawn
from ._types import ContainerizerError, LaunchError, LaunchSpec, Limitation, Termination
from ._wrapper import LAUNCH_FAILED_STATUS

__all__ = [
    "CGROUPS_PARENTS",
    "KNOWN_ISOLATORS",
    "LAUNCH_FAILED_STATUS",
    "Container",
    "Containerizer",
    "ContainerizerError",
    "ExecProcess",
    "LaunchError",
    "LaunchSpec",
    "Limitation",
    "Spawn",
    "Termination",
]
