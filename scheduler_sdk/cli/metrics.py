"""`aiomesos metrics`: the master's Prometheus metrics (what its /metrics serves, from the same collectors) as a
table: each sample with its labels, value, type and help; `--json` prints every sample by its Prometheus name."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from aiomesos.v1 import operator_pb2 as opb
from scheduler_sdk._daemon.flags import FlagParser
from scheduler_sdk.cli import tables
from scheduler_sdk.operator import OperatorClient


def add_parser(sub: Any, with_master: Callable[[FlagParser], FlagParser]) -> None:
    p = with_master(sub.add_parser("metrics", help="the master's metrics (as its /metrics serves them)"))
    p.add_argument("match", nargs="?", default="", help="only the metrics whose name contains this")
    p.add_argument("--all", action="store_true", help="histogram buckets and the process' own metrics too")
    p.add_argument("--json", action="store_true", help="print every sample by its Prometheus name, as JSON")


def value_text(value: float, name: str = "") -> str:
    """A sample's value for people: thousands separated; bytes also in binary units (4,294,967,296 = 4 GiB)."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    text = f"{int(value):,}" if value == int(value) and abs(value) < 1e15 else f"{value:,.6g}"
    if name.endswith("_bytes") and abs(value) >= 1024:
        return f"{text} ({_binary(value)})"
    return text


def _binary(value: float) -> str:
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024:
            return f"{value:.3g} {unit}"
    return f"{value:.3g} PiB"


def rows(families: Sequence[opb.MetricFamily], match: str = "", everything: bool = False) -> list[list[str]]:
    """[metric, labels, value, type, help] per sample, the family's help on its first row only."""
    out: list[list[str]] = []
    for family in sorted(families, key=lambda f: f.name):
        if match and match not in family.name:
            continue
        if not everything and family.name.startswith(("process_", "python_")):
            continue
        first = True
        for s in family.samples:
            if not everything and s.name.endswith(("_bucket", "_created")):
                continue
            labels = ", ".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            kind, doc = (family.type, family.help) if first else ("", "")
            out.append([s.name, labels, value_text(s.value, s.name), kind, doc])
            first = False
    return out


def print_rows(table_rows: list[list[str]], title: str) -> None:
    table = tables.FitTable(
        title, [tables.Column("METRIC", id=True), "LABELS", tables.Column("VALUE", "right"), "TYPE", "HELP"]
    )
    for row in table_rows:
        table.add_row(*row)
    tables.print_table(table)


async def cmd_metrics(args: argparse.Namespace) -> int:
    async with OperatorClient(args.master) as client:
        response = await client.metrics_response()
    if args.json:
        shown = {k: v for k, v in response.metrics.items() if not args.match or args.match in k}
        print(json.dumps(shown, indent=2, sort_keys=True))
        return 0
    print_rows(rows(response.families, args.match, args.all), "master metrics")
    return 0


COMMANDS = {"metrics": cmd_metrics}
