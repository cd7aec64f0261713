"""Launch task processes under cgroup (v1 or v2) isolation, or as plain posix processes.

Typical use by the agent::

    czr = Containerizer(f"aiomesos/agent-{agent_id}")
    if czr.warning:
        log.warning(czr.warning)
    czr.cleanup_orphans()
    container = await czr.launch(LaunchSpec(...))
    termination = await container.wait()
"""

from ._container import LAUNCH_FAILED_STATUS, Container
from ._containerizer import KNOWN_ISOLATORS, Containerizer
from ._types import ContainerizerError, LaunchError, LaunchSpec, Termination

__all__ = [
    "KNOWN_ISOLATORS",
    "LAUNCH_FAILED_STATUS",
    "Container",
    "Containerizer",
    "ContainerizerError",
    "LaunchError",
    "LaunchSpec",
    "Termination",
]
