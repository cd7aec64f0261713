"""`aiomesos masters`: every master of the cluster (which one leads, since when) and etcd's health, as GetMasters
answers it (any master answers, leader or standby)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from aiomesos.v1 import operator_pb2 as opb
from scheduler_sdk._daemon.flags import FlagParser
from scheduler_sdk.cli.tables import FitTable, print_table
from scheduler_sdk.operator import OperatorClient

MASTER_COLUMNS = [
    ("ID", "id"),
    ("ADDRESS", "address"),
    ("HOSTNAME", "hostname"),
    ("ROLE", "role"),
    ("STARTED", "started"),
    ("ELECTED", "elected"),
]
ETCD_COLUMNS = [
    ("ENDPOINT", "endpoint"),
    ("HEALTH", "health"),
    ("VERSION", "version"),
    ("RAFT LEADER", "is_leader"),
    ("DB SIZE", "db_size"),
    ("ERROR", "error"),
]


def add_parsers(sub: Any, with_master: Callable[[FlagParser], FlagParser]) -> None:
    masters = with_master(sub.add_parser("masters", help="list the masters, which one leads, and etcd's health"))
    masters.add_argument("--json", action="store_true", help="print a JSON object: masters, leader, etcd")


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds > 0 else "-"


def masters_json(resp: opb.GetMastersResponse) -> dict[str, Any]:
    return {
        "leader_id": resp.leader_id,
        "registry": resp.registry,
        "etcd_prefix": resp.etcd_prefix,
        "masters": [
            {
                "id": m.master_id,
                "address": m.address,
                "hostname": m.hostname,
                "leader": m.leader,
                "started_at": m.started_at,
                "elected_at": m.elected_at,
            }
            for m in resp.masters
        ],
        "etcd": [
            {
                "endpoint": e.endpoint,
                "healthy": e.healthy,
                "version": e.version,
                "is_leader": e.is_leader,
                "db_size": e.db_size,
                "error": e.error,
            }
            for e in resp.etcd
        ],
    }


def master_rows(resp: opb.GetMastersResponse) -> list[dict[str, Any]]:
    """The masters as table rows, the leader first."""
    ordered = sorted(resp.masters, key=lambda m: (not m.leader, m.master_id))
    return [
        {
            "id": m.master_id,
            "address": m.address,
            "hostname": m.hostname,
            "role": "LEADER" if m.leader else "standby",
            "started": _when(m.started_at),
            "elected": _when(m.elected_at) if m.leader else "-",
        }
        for m in ordered
    ]


def etcd_rows(resp: opb.GetMastersResponse) -> list[dict[str, Any]]:
    return [
        {
            "endpoint": e.endpoint,
            "health": "healthy" if e.healthy else "UNHEALTHY",
            "version": e.version or "-",
            "is_leader": e.is_leader,
            "db_size": f"{e.db_size / (1 << 20):.1f} MiB" if e.healthy else "-",
            "error": e.error or "-",
        }
        for e in resp.etcd
    ]


def masters_title(resp: opb.GetMastersResponse) -> str:
    leader = f"leader {resp.leader_id}" if resp.leader_id else "NO LEADER elected right now"
    registry = f"registry {resp.registry}" + (f" at {resp.etcd_prefix}" if resp.etcd_prefix else "")
    return f"{len(resp.masters)} masters, {leader}, {registry}"


def _print(rows: list[dict[str, Any]], columns: list[tuple[str, str]], title: str) -> None:
    table = FitTable(title, [header for header, _ in columns])
    for row in rows:
        table.add_row(*(("yes" if v else "no") if isinstance(v := row[key], bool) else str(v) for _, key in columns))
    print_table(table)


async def cmd_masters(args: argparse.Namespace) -> int:
    async with OperatorClient(args.master) as client:
        resp = await client.masters()
    if args.json:
        print(json.dumps(masters_json(resp), indent=2))
        return 0
    _print(master_rows(resp), MASTER_COLUMNS, masters_title(resp))
    if resp.etcd:
        healthy = sum(1 for e in resp.etcd if e.healthy)
        _print(etcd_rows(resp), ETCD_COLUMNS, f"etcd: {healthy}/{len(resp.etcd)} endpoints healthy")
    return 0


COMMANDS = {"masters": cmd_masters}
