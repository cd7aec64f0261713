"""`aiomesos simulate`: the policy simulator (docs/simulate.md).

It replays a trace through the master's own core, which the SDK may not import: the command runs
`python -m mesos_master.simulation` with the same arguments (it parses them itself, `--help` included) and exits
with its exit code.

aiomesos simulate TRACE [--allocator drf] [--fitness binpacking] [--compare POLICY] [--agents SPEC] [--until 24h]
aiomesos simulate generate [--agents SPEC] [--hours 24] [--load 0.7] [--seed N] [--out FILE]
aiomesos simulate convert-google task_events.csv... [--out FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

SIMULATOR = "mesos_master.simulation"


def add_parsers(sub: Any) -> None:
    """For `aiomesos --help`; `main` hands `aiomesos simulate ...` to `run` before parsing."""
    sp = sub.add_parser(
        "simulate",
        help="replay a workload trace in virtual time through the master's core (see `aiomesos simulate --help`)",
        add_help=False,
    )
    sp.add_argument("args", nargs=argparse.REMAINDER)


def run(argv: Sequence[str]) -> int:
    try:
        return subprocess.run([sys.executable, "-m", SIMULATOR, *argv], check=False).returncode
    except KeyboardInterrupt:
        return 130
