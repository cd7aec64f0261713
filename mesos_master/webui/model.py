"""What the web UI's pages show, computed from the master's core: pure functions of a `Master` and of what the
viewer may see (the `view_frameworks` ACL, as the Operator API's reads). The summaries are the Operator API's own
(`mesos_master.api.operator`), so a page and `aiomesos agents` / `tasks` never disagree."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.api.operator import agent_summary, framework_summary
from mesos_master.cluster import AgentRecord, Framework, Master, Task
from scheduler_sdk.quoting import quoted
from scheduler_sdk.resources import UNRESERVED, Resources, attribute_values
from scheduler_sdk.states import is_terminal, state_name

Visible = Callable[[str], bool]
#: The resources a page shows in columns of their own (the others are listed as text).
SHOWN = ("cpus", "mem", "disk", "gpus")
#: The most task rows one page lists (the filters narrow it down).
MAX_ROWS = 2000


# ------------------------------------------------------------------------------------------ cluster
@dataclass(frozen=True)
class RoleRow:
    role: str
    weight: float
    used: Resources  # its tasks' resources and its outstanding offers
    reserved: Resources  # reserved for it on the agents (static and dynamic)
    guarantee: Resources | None  # its quota's guarantee (None: no quota)
    limit: Resources | None  # its quota's limit (None: none)


@dataclass(frozen=True)
class Totals:
    agents: int
    agents_active: int
    frameworks: int
    total: Resources
    allocated: Resources  # used by tasks or offered
    offered: Resources
    tasks: Mapping[str, int]  # state name -> count, of the tasks the viewer may see (active and completed)
    roles: Sequence[RoleRow]


def visible_frameworks(master: Master, visible: Visible, *, completed: bool = True) -> list[Framework]:
    """The frameworks the viewer may see (view_frameworks on each framework's principal), active first."""
    frameworks: Iterable[Framework] = master.frameworks.values()
    if completed:
        frameworks = [*frameworks, *master.completed_frameworks]
    return [fw for fw in frameworks if visible(fw.info.principal)]


def all_tasks(frameworks: Iterable[Framework]) -> Iterator[Task]:
    """Every task of `frameworks`, active then completed, each framework in turn."""
    for fw in frameworks:
        yield from fw.tasks.values()
        yield from fw.completed_tasks


def totals(master: Master, visible: Visible) -> Totals:
    agents = [agent_summary(master, a) for a in master.agents.values()]
    total = sum_resources(Resources.from_proto(a.total) for a in agents)
    allocated = sum_resources(Resources.from_proto(a.allocated) for a in agents)
    offered = sum_resources(Resources.from_proto(a.offered) for a in agents)
    states = Counter(state_name(t.state) for t in all_tasks(visible_frameworks(master, visible)))
    return Totals(
        agents=len(agents),
        agents_active=sum(1 for a in agents if a.active),
        frameworks=len(visible_frameworks(master, visible, completed=False)),
        total=total,
        allocated=allocated,
        offered=offered,
        tasks=dict(sorted(states.items())),
        roles=role_rows(master),
    )


def role_rows(master: Master) -> list[RoleRow]:
    """Allocation by role: every role that holds, has reserved, has a quota or a weight."""
    usage = master.role_usage()
    reserved: dict[str, Resources] = {}
    for agent in master.agents.values():
        for role in agent.total.roles() - {UNRESERVED}:
            reserved[role] = reserved.get(role, Resources.empty()) + Resources.flatten(agent.total.reserved(role))
    roles = sorted(set(usage) | set(reserved) | set(master.quotas) | set(master.weights))
    rows = []
    for role in roles:
        quota = master.quotas.get(role)
        rows.append(
            RoleRow(
                role=role,
                weight=master.weights.get(role, 1.0),
                used=Resources.flatten(usage.get(role, Resources.empty())),
                reserved=reserved.get(role, Resources.empty()),
                guarantee=quota.guarantee if quota is not None else None,
                limit=quota.limit if quota is not None else None,
            )
        )
    return rows


def sum_resources(items: Iterable[Resources]) -> Resources:
    """The sum, with every reservation folded into one pool (a cluster total, a role's sum)."""
    out = Resources.empty()
    for r in items:
        out = out + Resources.flatten(r)
    return out


# ------------------------------------------------------------------------------------------ agents
@dataclass(frozen=True)
class AgentRow:
    summary: opb.AgentSummary
    state: str  # active | disconnected | unreachable | DRAINING | DRAINED
    attributes: Mapping[str, str]
    total: Resources
    allocated: Resources


def agent_state(master: Master, agent: AgentRecord) -> str:
    drain = master.drains.get(agent.id)
    if drain is not None:
        return drain.state
    if agent.unreachable_at is not None:
        return "unreachable"
    return "active" if agent.connected else "disconnected"


def agent_row(master: Master, agent: AgentRecord) -> AgentRow:
    summary = agent_summary(master, agent)
    return AgentRow(
        summary=summary,
        state=agent_state(master, agent),
        attributes=attribute_values(agent.info.attributes),
        total=Resources.flatten(Resources.from_proto(summary.total)),
        allocated=Resources.flatten(Resources.from_proto(summary.allocated)),
    )


def agent_rows(master: Master) -> list[AgentRow]:
    return [agent_row(master, a) for _, a in sorted(master.agents.items())]


# ------------------------------------------------------------------------------------------ frameworks
def framework_rows(master: Master, visible: Visible) -> list[opb.FrameworkSummary]:
    active = [framework_summary(master, fw, True) for fw in visible_frameworks(master, visible, completed=False)]
    completed = [
        framework_summary(master, fw, False) for fw in master.completed_frameworks if visible(fw.info.principal)
    ]
    return active + completed


# ------------------------------------------------------------------------------------------ tasks
@dataclass(frozen=True)
class TaskFilter:
    """What the tasks page lists: every field a narrowing ("" matches all). `name` matches part of the task's
    name or id; `state` is a state name (TASK_RUNNING) or `active` / `terminal`."""

    state: str = ""
    framework: str = ""
    agent: str = ""  # an agent id or hostname
    name: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> TaskFilter:
        """From a page's query string; raises ValueError (naming the field) for a state that is not one."""
        state = query.get("state", "").strip()
        if state and state not in ("active", "terminal") and state not in tpb.TaskState.keys():  # noqa: SIM118 (an enum wrapper, not a dict)
            raise ValueError(f"state: {quoted(state)} is not a task state (TASK_RUNNING, ..., active, terminal)")
        return cls(
            state=state,
            framework=query.get("framework", "").strip()[:255],
            agent=query.get("agent", "").strip()[:255],
            name=query.get("name", "").strip()[:255],
        )

    def matches(self, task: Task, hostname: str) -> bool:
        if self.state == "active" and is_terminal(task.state):
            return False
        if self.state == "terminal" and not is_terminal(task.state):
            return False
        if self.state not in ("", "active", "terminal") and state_name(task.state) != self.state:
            return False
        if self.framework and task.framework_id != self.framework:
            return False
        if self.agent and self.agent not in (task.agent_id, hostname):
            return False
        return not self.name or self.name in task.info.name or self.name in task.task_id


@dataclass(frozen=True)
class TaskRow:
    framework_id: str
    task_id: str
    name: str
    state: str
    agent_id: str
    hostname: str
    resources: Resources
    updated_at: float  # the latest status' time (0: none yet)
    reason: str
    message: str


def task_row(task: Task, hostname: str) -> TaskRow:
    latest = task.latest()
    reason = tpb.TaskStatus.Reason.Name(latest.reason) if latest is not None and latest.reason else ""
    return TaskRow(
        framework_id=task.framework_id,
        task_id=task.task_id,
        name=task.info.name,
        state=state_name(task.state),
        agent_id=task.agent_id,
        hostname=hostname,
        resources=Resources.flatten(task.resources),
        updated_at=latest.timestamp if latest is not None else 0.0,
        reason=reason,
        message=latest.message if latest is not None else "",
    )


@dataclass(frozen=True)
class TaskPage:
    rows: Sequence[TaskRow]
    matched: int  # how many matched (rows holds at most `limit` of them)
    frameworks: Sequence[tuple[str, str]] = field(default_factory=tuple)  # (id, name) for the filter's choices


def task_rows(master: Master, visible: Visible, wanted: TaskFilter, limit: int = MAX_ROWS) -> TaskPage:
    """The tasks the viewer may see that match, active first, then the latest completed; at most `limit`."""
    frameworks = visible_frameworks(master, visible)
    hostnames = {agent_id: a.info.hostname for agent_id, a in master.agents.items()}
    rows: list[TaskRow] = []
    matched = 0
    for task in all_tasks(frameworks):
        hostname = hostnames.get(task.agent_id, "")
        if not wanted.matches(task, hostname):
            continue
        matched += 1
        rows.append(task_row(task, hostname))
    # Sorted before the cut, so that the rows kept are the active ones, then the latest completed.
    kept = heapq.nsmallest(
        limit, rows, key=lambda r: (is_terminal(tpb.TaskState.Value(r.state)), -r.updated_at, r.task_id)
    )
    return TaskPage(kept, matched, [(fw.id, fw.info.name) for fw in frameworks])


def find_task(master: Master, visible: Visible, framework_id: str, task_id: str) -> Task | None:
    """The task (active, else the latest completed with that id) of a framework the viewer may see."""
    for fw in visible_frameworks(master, visible):
        if fw.id != framework_id:
            continue
        task = fw.tasks.get(task_id)
        return task if task is not None else fw.completed_task(task_id)
    return None


def find_framework(master: Master, visible: Visible, framework_id: str) -> tuple[Framework, bool] | None:
    """The framework and whether it is active, if the viewer may see it."""
    fw = master.frameworks.get(framework_id)
    if fw is not None:
        return (fw, True) if visible(fw.info.principal) else None
    for done in master.completed_frameworks:
        if done.id == framework_id and visible(done.info.principal):
            return done, False
    return None


# ------------------------------------------------------------------------------------------ workflows
def dag_layers(steps: Sequence[tuple[str, Sequence[str]]]) -> list[list[str]]:
    """A workflow's steps in layers: each step one layer after the deepest step it depends on (the order of
    `steps` kept within a layer). A dependency on an unknown step is ignored; a cycle (which the jobs service
    refuses) is broken by putting what is left in one last layer."""
    known = {name for name, _ in steps}
    deps = {name: [d for d in after if d in known and d != name] for name, after in steps}
    depth: dict[str, int] = {}
    remaining = [name for name, _ in steps]
    while remaining:
        ready = [n for n in remaining if all(d in depth for d in deps[n])]
        if not ready:
            last = max(depth.values(), default=-1) + 1
            depth.update(dict.fromkeys(remaining, last))
            break
        for n in ready:
            depth[n] = max((depth[d] + 1 for d in deps[n]), default=0)
        remaining = [n for n in remaining if n not in depth]
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name, _ in steps:
        layers[depth[name]].append(name)
    return layers
