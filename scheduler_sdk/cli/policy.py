"""`aiomesos weights`, `quota`, `reserve`, `unreserve`: the operator's allocation policy (and `metrics`, whose
command is scheduler_sdk.cli.metrics)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from scheduler_sdk._daemon.flags import FlagParser, UsageError
from scheduler_sdk.cli import metrics as metrics_cli
from scheduler_sdk.cli.tables import Column, FitTable, print_table
from scheduler_sdk.operator import OperatorClient
from scheduler_sdk.resources import Resources, ResourcesError


def add_parsers(sub: Any, with_master: Callable[[FlagParser], FlagParser]) -> None:
    weights = with_master(sub.add_parser("weights", help="show or set role weights"))
    weights.add_argument("action", nargs="?", choices=["set"], help="set: change weights")
    weights.add_argument("pairs", nargs="*", metavar="ROLE=WEIGHT", help="e.g. eng=2 ads=1")
    weights.add_argument("--json", action="store_true", help="print JSON")

    quota = with_master(sub.add_parser("quota", help="show, set or remove role quotas"))
    quota.add_argument("action", nargs="?", choices=["set", "remove"])
    quota.add_argument("role", nargs="?")
    quota.add_argument("--guarantee", default="", help="e.g. cpus=10,mem=8192: set aside for the role")
    quota.add_argument("--limit", default=None, help="e.g. cpus=20: never exceeded")
    quota.add_argument("--json", action="store_true", help="print JSON")

    for name, what in (("reserve", "reserve resources of an agent for roles"), ("unreserve", "undo a reservation")):
        sp = with_master(sub.add_parser(name, help=what))
        sp.add_argument("agent_id")
        sp.add_argument("resources", help='with roles, e.g. "cpus(eng):2;mem(eng):1024"')

    metrics_cli.add_parser(sub, with_master)


def _amounts(text: str, flag: str) -> Resources:
    """`cpus=10,mem=8192` (or Mesos' `cpus:10;mem:8192`)."""
    normalized = text.replace("=", ":").replace(",", ";")
    try:
        res = Resources.parse(normalized)
    except ResourcesError as e:
        raise UsageError(f"{flag} {text!r}: {e}") from None
    if not res.scalars():
        raise UsageError(f"{flag} {text!r}: expected NAME=AMOUNT pairs such as cpus=10,mem=8192")
    return res


def _fmt(res: Resources) -> str:
    return _amounts_text(res.scalars())


async def cmd_weights(args: argparse.Namespace) -> int:
    async with OperatorClient(args.master) as client:
        if args.action == "set":
            if not args.pairs:
                raise UsageError("weights set needs ROLE=WEIGHT pairs, e.g. eng=2 ads=1")
            weights: dict[str, float] = {}
            for pair in args.pairs:
                role, sep, value = pair.partition("=")
                try:
                    weights[role] = float(value)
                except ValueError:
                    raise UsageError(f"{pair!r}: expected ROLE=WEIGHT with a number") from None
                if not sep or not role or not weights[role] > 0:
                    raise UsageError(f"{pair!r}: expected ROLE=WEIGHT with a weight > 0")
            await client.update_weights(weights)
            print("weights set: " + ", ".join(f"{r}={w:g}" for r, w in weights.items()))
            return 0
        current = await client.weights()
    if args.json:
        print(json.dumps([{"role": r, "weight": w} for r, w in sorted(current.items())], indent=2))
    elif current:
        print_table(weights_table(current))
    else:
        print("no weights set (all roles weigh 1)")
    return 0


def weights_table(weights: dict[str, float]) -> FitTable:
    table = FitTable(f"{len(weights)} role weights (a role not listed weighs 1)", [Column("ROLE", id=True), "WEIGHT"])
    for role, weight in sorted(weights.items()):
        table.add_row(role, f"{weight:g}")
    return table


async def cmd_quota(args: argparse.Namespace) -> int:
    async with OperatorClient(args.master) as client:
        if args.action == "set":
            if not args.role:
                raise UsageError("quota set needs a ROLE")
            guarantee = _amounts(args.guarantee, "--guarantee") if args.guarantee else Resources.empty()
            limit = _amounts(args.limit, "--limit") if args.limit is not None else None
            if not guarantee and limit is None:
                raise UsageError("quota set needs --guarantee and/or --limit")
            await client.set_quota(args.role, guarantee, limit)
            print(f"quota of {args.role}: guarantee {_fmt(guarantee)}, limit {_fmt(limit) if limit else 'none'}")
            return 0
        if args.action == "remove":
            if not args.role:
                raise UsageError("quota remove needs a ROLE")
            await client.remove_quota(args.role)
            print(f"quota of {args.role} removed")
            return 0
        resp = await client.quota()
    rows: list[dict[str, Any]] = []
    for r in resp.roles:
        rows.append(
            {
                "role": r.role,
                "weight": r.weight,
                "guarantee": Resources.from_proto(r.quota.guarantee).scalars() if r.HasField("quota") else {},
                "limit": Resources.from_proto(r.quota.limit).scalars()
                if r.HasField("quota") and r.quota.has_limit
                else None,
                "allocated": Resources.from_proto(r.allocated).scalars(),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(quota_table(rows))
    return 0


def _amounts_text(amounts: dict[str, float] | None) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(amounts.items())) if amounts else "-"


def quota_table(rows: list[dict[str, Any]]) -> FitTable:
    """`aiomesos quota`: each role's weight, guarantee, limit and what it is allocated now."""
    table = FitTable(
        f"{len(rows)} roles", [Column("ROLE", id=True), Column("WEIGHT", "right"), "GUARANTEE", "LIMIT", "ALLOCATED"]
    )
    for row in rows:
        table.add_row(
            row["role"],
            f"{row['weight']:g}",
            _amounts_text(row["guarantee"]),
            _amounts_text(row["limit"]),
            _amounts_text(row["allocated"]),
        )
    return table


async def cmd_reserve(args: argparse.Namespace) -> int:
    try:
        resources = Resources.parse(args.resources)
    except ResourcesError as e:
        raise UsageError(f"resources {args.resources!r}: {e}") from None
    async with OperatorClient(args.master) as client:
        if args.command == "reserve":
            await client.reserve(args.agent_id, resources)
        else:
            await client.unreserve(args.agent_id, resources)
    print(f"{args.command}d {resources} on agent {args.agent_id}")
    return 0


COMMANDS = {
    "weights": cmd_weights,
    "quota": cmd_quota,
    "reserve": cmd_reserve,
    "unreserve": cmd_reserve,
    **metrics_cli.COMMANDS,
}
