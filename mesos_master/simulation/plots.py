"""The PNG plots of one or two replays, side by side (one column per policy, shared axes):

- `utilization.png`: the share of the cluster's cpus and mem held by running tasks, over time;
- `waits.png`: the queue wait (arrival to RUNNING) per role, as a distribution (CDF, log time);
- `shares.png`: each role's dominant share over time.

Written without metadata that changes between runs, so the same replay gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mesos_master.simulation.replay import ReplayResult

__all__ = ["write_plots"]

_METADATA: dict[str, Any] = {"Software": None}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def _hours(result: ReplayResult) -> tuple[list[float], str]:
    scale, unit = (3600.0, "hours") if result.figures.horizon > 7200 else (1.0, "seconds")
    return [t / scale for t in result.figures.buckets], unit


def write_plots(results: Sequence[ReplayResult], out: Path) -> list[Path]:
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (("utilization", _utilization), ("waits", _waits), ("shares", _shares)):
        n = len(results)
        # a fixed layout (tight_layout would cost as much as the drawing)
        grid = {"left": 0.1 / n, "right": 0.98, "bottom": 0.14, "top": 0.9, "wspace": 0.08}
        fig, axes = plt.subplots(1, n, figsize=(6 * n, 4), sharey=True, squeeze=False, gridspec_kw=grid)
        for ax, result in zip(axes[0], results, strict=True):
            draw(ax, result)
            ax.set_title(result.policy.label)
            ax.grid(True, alpha=0.3)
        axes[0][0].legend(loc="best", fontsize="small")
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100, metadata=_METADATA)
        plt.close(fig)
        written.append(path)
    return written


def _utilization(ax: Any, result: ReplayResult) -> None:
    x, unit = _hours(result)
    for resource, series in result.figures.utilization.items():
        ax.plot(x, [100.0 * v for v in series], label=resource, drawstyle="steps-post")
    ax.set_xlabel(f"trace time ({unit})")
    ax.set_ylabel("utilization (%)")
    ax.set_ylim(0, 105)


def _shares(ax: Any, result: ReplayResult) -> None:
    x, unit = _hours(result)
    for role, series in sorted(result.figures.shares.items()):
        ax.plot(x, [100.0 * v for v in series], label=role, drawstyle="steps-post")
    ax.set_xlabel(f"trace time ({unit})")
    ax.set_ylabel("dominant share (%)")
    ax.set_ylim(0, 105)


def _waits(ax: Any, result: ReplayResult) -> None:
    by_role: dict[str, list[float]] = {}
    for r in result.records:
        if r.start is not None:
            by_role.setdefault(r.role, []).append(max(r.start - r.arrival, 1e-3))
    for role, waits in sorted(by_role.items()):
        waits.sort()
        ax.step(waits, [100.0 * (i + 1) / len(waits) for i in range(len(waits))], where="post", label=role)
    ax.set_xscale("log")
    ax.set_xlabel("queue wait (seconds, log)")
    ax.set_ylabel("tasks started within (%)")
    ax.set_ylim(0, 105)
