"""Synthetic traces: jobs arriving as a Poisson process (with a daily swell), sized to load the cluster to a target.

A job has a role (drawn by weight), a task count (geometric, mean `mean_tasks`), one task shape for all its tasks
(cpus from `CPU_SHAPES`, mem 1-8 GB per cpu), and a run time (log-normal around `median_duration`, clipped to
[10 s, 12 h]: many short tasks, a heavy tail, as in the Google and Alibaba traces). The arrival rate is chosen so
that the cluster's cpus are `load` busy on average; the rate swells and ebbs by `diurnal` over a day. A share of
jobs carries constraints: `{"balanced": "zone", "soft": true}` where the agents have zones, and
`{"unique": "hostname"}`. Seeded: the same arguments give the same trace.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from mesos_master.simulation.agents import capacity
from mesos_master.simulation.trace import AgentGroup, Arrival
from scheduler_sdk.frameworks.jobs.spec import ConstraintSpec

__all__ = ["CPU_SHAPES", "GeneratorOptions", "generate"]

CPU_SHAPES = ((0.5, 0.3), (1.0, 0.3), (2.0, 0.2), (4.0, 0.15), (8.0, 0.05))  # (cpus, probability)
_MIN_DURATION, _MAX_DURATION = 10.0, 12 * 3600.0
_DAY = 86400.0


@dataclass(frozen=True)
class GeneratorOptions:
    hours: float = 24.0
    load: float = 0.7  # the mean share of the cluster's cpus the trace asks for
    roles: tuple[tuple[str, float], ...] = (("prod", 2.0), ("batch", 1.0), ("dev", 1.0))
    mean_tasks: float = 4.0
    median_duration: float = 600.0
    duration_sigma: float = 1.0
    diurnal: float = 0.5  # the rate is (1 + diurnal * sin(2 pi t / day)) x the mean
    constrained: float = 0.1  # the share of jobs with a constraint
    seed: int = 0


def parse_roles(text: str) -> tuple[tuple[str, float], ...]:
    """`prod:2,batch:1` -> (("prod", 2.0), ("batch", 1.0)); a role without a weight weighs 1."""
    out = []
    for item in (i.strip() for i in text.split(",") if i.strip()):
        name, _, weight = item.partition(":")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            w = -1.0
        if not name or not w > 0 or not math.isfinite(w):
            raise ValueError(f"--roles: {item!r} must be ROLE or ROLE:WEIGHT with a weight > 0")
        out.append((name, w))
    if not out:
        raise ValueError("--roles: name at least one role")
    return tuple(out)


def generate(agents: Sequence[AgentGroup], options: GeneratorOptions) -> list[Arrival]:
    rng = random.Random(options.seed)
    totals, largest = capacity(agents)
    mean_cpus = sum(c * p for c, p in CPU_SHAPES)
    # E[duration] of the clipped log-normal, near enough: the unclipped mean.
    mean_duration = min(_MAX_DURATION, options.median_duration * math.exp(options.duration_sigma**2 / 2))
    work_per_job = mean_cpus * options.mean_tasks * mean_duration  # cpu-seconds
    rate = options.load * totals.get("cpus", 0.0) / work_per_job  # jobs per second, on average
    peak = rate * (1.0 + abs(options.diurnal))
    zones = any(name == "zone" for group in agents for name, _ in group.spread)
    roles = [r for r, _ in options.roles]
    weights = [w for _, w in options.roles]
    horizon = options.hours * 3600.0
    arrivals: list[Arrival] = []
    t = 0.0
    while peak > 0:
        t += rng.expovariate(peak)
        if t >= horizon:
            break
        swell = 1.0 + options.diurnal * math.sin(2 * math.pi * t / _DAY)
        if rng.random() * (1.0 + abs(options.diurnal)) > swell:
            continue  # thinned: the rate is lower at this time of day
        arrivals.append(_job(rng, f"j{len(arrivals)}", round(t, 3), rng.choices(roles, weights)[0], options, zones))
    fit = min(largest.get("cpus", 0.0), max(c for c, _ in CPU_SHAPES))
    return [a for a in arrivals if a.resources["cpus"] <= fit] if fit else arrivals


def _job(rng: random.Random, job: str, t: float, role: str, o: GeneratorOptions, zones: bool) -> Arrival:
    cpus = rng.choices([c for c, _ in CPU_SHAPES], [p for _, p in CPU_SHAPES])[0]
    mem = float(round(cpus * 1024 * rng.choice((1, 2, 4, 8))))
    tasks = 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - 1.0 / o.mean_tasks)) if o.mean_tasks > 1 else 1
    duration = o.median_duration * math.exp(rng.gauss(0.0, o.duration_sigma))
    duration = round(min(_MAX_DURATION, max(_MIN_DURATION, duration)), 1)
    constraints: tuple[ConstraintSpec, ...] = ()
    if rng.random() < o.constrained:
        if zones and rng.random() < 0.5:
            constraints = (ConstraintSpec("balanced", attribute="zone", soft=True),)
        else:
            constraints = (ConstraintSpec("unique", attribute="hostname"),)
    return Arrival(t, job, tasks, role, {"cpus": cpus, "mem": mem}, duration, constraints)
