"""The table of one or two replays, side by side: one column per policy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from mesos_master.simulation.replay import ReplayResult

__all__ = ["table"]


def _pct(v: float) -> str:
    return f"{100.0 * v:.1f}%"


def _secs(v: float) -> str:
    if v >= 3600:
        return f"{v / 3600.0:.2f}h"
    if v >= 60:
        return f"{v / 60.0:.1f}m"
    return f"{v:.2f}s"


def table(results: Sequence[ReplayResult]) -> str:
    """A plain-text table: the rows are the figures, the columns the policies."""
    summaries = [r.summary() for r in results]
    roles = sorted({role for s in summaries for role in s["wait_s"] if role != "all"})
    rows: list[tuple[str, list[str]]] = [("policy", [s["policy"] for s in summaries])]

    def row(label: str, fn: Callable[[dict[str, Any]], str]) -> None:
        rows.append((label, [fn(s) for s in summaries]))

    row("tasks (finished)", lambda s: f"{s['tasks']} ({s['finished']})")
    row("never placed", lambda s: str(s["never_placed"]))
    row("replayed (trace time)", lambda s: _secs(s["horizon_s"]))
    row("makespan", lambda s: _secs(s["makespan_s"]))
    for name in ("cpus", "mem"):
        row(f"utilization {name} mean (p95)", partial(_utilization, name=name))
    for role in [*roles, "all"]:
        row(f"wait {role} p50 / p99", partial(_wait, role=role))
    for role in roles:
        row(f"dominant share {role} mean / max", partial(_share, role=role))
    reasons = sorted({why for s in summaries for why in s["never_placed_why"]})
    for why in reasons:
        row(f"  never placed: {why}", partial(_never, why=why))
    row("replay wall time", lambda s: f"{s['replay']['wall_s']:.2f}s")
    row("trace-hours per second", lambda s: f"{s['replay']['trace_hours_per_s']:.2f}")
    width = max(len(label) for label, _ in rows)
    cols = [max(len(values[i]) for _, values in rows) for i in range(len(summaries))]
    lines = []
    for label, values in rows:
        cells = "  ".join(v.rjust(cols[i]) for i, v in enumerate(values))
        lines.append(f"{label.ljust(width)}  {cells}".rstrip())
    return "\n".join(lines)


def _wait(s: dict[str, Any], role: str) -> str:
    w = s["wait_s"].get(role)
    if not w or not w["placed"]:
        return "-"
    return f"{_secs(w['p50'])} / {_secs(w['p99'])}"


def _utilization(s: dict[str, Any], name: str) -> str:
    return f"{_pct(s['utilization_mean'][name])} ({_pct(s['utilization_p95'][name])})"


def _share(s: dict[str, Any], role: str) -> str:
    return f"{_pct(s['dominant_share_mean'].get(role, 0.0))} / {_pct(s['dominant_share_max'].get(role, 0.0))}"


def _never(s: dict[str, Any], why: str) -> str:
    return str(s["never_placed_why"].get(why, 0))
