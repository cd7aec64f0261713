"""The policy simulator (`aiomesos simulate`, docs/simulate.md): a workload trace replayed in virtual time through
the master's own core (`mesos_master.cluster.Master`, a real allocator, the in-memory registry, an injected clock)
and frameworks built on the SDK's placement engine, with no gRPC and no processes.

`trace` (the JSON-lines format), `generate` (synthetic traces), `google` (the Google cluster trace's
task_events), `agents` (virtual agents), `frameworks` (the role frameworks), `replay` (the virtual-time loop),
`metrics` (the figures), `report` (the table), `plots` (the PNGs), `live` (the same trace on a real cluster).
"""

from __future__ import annotations

import logging

import structlog


def quiet_logging() -> None:
    """The core and the SDK log as daemons do; a replay is a batch job: only what goes wrong is shown."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
