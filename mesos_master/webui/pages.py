"""The web UI's pages of the master's own state, as HTML: overview, agents, an agent, frameworks, tasks, a task.
Pure functions of the models (`webui.model`); the jobs pages are `webui.jobs_pages`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiomesos.v1 import agent_pb2
from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.cluster import Framework, Task
from mesos_master.webui.live import exit_code
from mesos_master.webui.markup import (
    attr,
    definitions,
    esc,
    link,
    path,
    resources_text,
    state_badge,
    table,
    usage_cell,
    when,
)
from mesos_master.webui.model import SHOWN, AgentRow, RoleRow, TaskFilter, TaskPage, TaskRow, Totals
from mesos_master.webui.sandbox import Tail
from scheduler_sdk.resources import Resources
from scheduler_sdk.states import is_terminal, state_name

#: The choices of the tasks page's state filter.
STATE_CHOICES = ("", "active", "terminal", *tpb.TaskState.keys())


def _resources_or_dash(res: Resources | None) -> str:
    return esc(resources_text(res)) if res is not None else "—"


# ------------------------------------------------------------------------------------------ overview
def overview(t: Totals) -> str:
    resources = "".join(
        f"<tr><th>{esc(name)}</th>{usage_cell(name, t.allocated.scalar(name), t.total.scalar(name))}"
        f"<td class=num>{esc(t.offered.scalar(name) or '')}</td></tr>"
        for name in SHOWN
        if t.total.scalar(name) or t.allocated.scalar(name)
    )
    counts = "".join(
        f'<tr><td>{state_badge(state, "name")}</td><td class=num data-count="{attr(state)}">{n}</td></tr>'
        for state, n in t.tasks.items()
    )
    return f"""
<section class=cards>
<div class=card><span class=big>{t.agents_active}</span> of {t.agents} agents active</div>
<div class=card><span class=big>{t.frameworks}</span> frameworks</div>
<div class=card><span class=big data-count=active>{_active(t.tasks)}</span> active tasks</div>
</section>
<h2>Resources</h2>
<table id=resources><thead><tr><th></th><th>allocated / total</th><th>offered</th></tr></thead>
<tbody>{resources}</tbody></table>
<h2>Tasks by state</h2>
<table id=task-states data-counts=1><thead><tr><th>state</th><th>tasks</th></tr></thead><tbody>{counts}</tbody></table>
<h2>Allocation by role</h2>
{roles_table(t.roles)}
"""


def _active(counts: Mapping[str, int]) -> int:
    return sum(n for state, n in counts.items() if not is_terminal(tpb.TaskState.Value(state)))


def roles_table(roles: Sequence[RoleRow]) -> str:
    rows = (
        f'<tr data-role="{attr(r.role)}"><td>{esc(r.role)}</td><td class=num>{r.weight:g}</td>'
        f"<td>{esc(resources_text(r.used))}</td><td>{esc(resources_text(r.reserved))}</td>"
        f"<td>{_resources_or_dash(r.guarantee)}</td><td>{_resources_or_dash(r.limit)}</td></tr>"
        for r in roles
    )
    return table(["role", "weight", "used", "reserved", "quota guarantee", "quota limit"], rows, table_id="roles")


# ------------------------------------------------------------------------------------------ agents
AGENT_HEADERS = ["agent", "hostname", "state", "cpus", "mem", "disk", "gpus", "tasks", "attributes", "registered"]


def agent_tr(row: AgentRow) -> str:
    s = row.summary
    info = s.agent_info
    usage = "".join(
        usage_cell(n, row.allocated.scalar(n), row.total.scalar(n)) for n in ("cpus", "mem", "disk", "gpus")
    )
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(row.attributes.items()))
    return (
        f'<tr data-agent="{attr(info.id)}"><td>{link(path("agents", info.id), info.id)}</td>'
        f"<td>{esc(info.hostname)}</td><td>{state_badge(row.state)}</td>{usage}"
        f'<td class=num data-field="tasks">{s.task_count}</td><td>{esc(attrs)}</td>'
        f"<td>{when(s.reregistered_time or s.registered_time)}</td></tr>"
    )


def agents(rows: Sequence[AgentRow]) -> str:
    return table(AGENT_HEADERS, (agent_tr(r) for r in rows), table_id="agents")


def usage_table(containers: Sequence[agent_pb2.ContainerStatus], error: str) -> str:
    """What the agent measured of each container: CPU time, memory and disk against their limits, processes."""
    if error:
        return f"<p class=message id=usage-error>{esc(error)}</p>"
    rows = []
    for c in containers:
        st = c.statistics
        cpu = st.cpus_user_time_secs + st.cpus_system_time_secs
        mem, disk = st.mem_rss_bytes / 2**20, st.disk_used_bytes / 2**20
        rows.append(
            f'<tr data-task="{attr(c.framework_id + "/" + c.task_id)}">'
            f"<td>{link(path('tasks', c.framework_id, c.task_id), c.task_id)}</td>"
            f"<td>{state_badge(state_name(c.state))}</td>"
            f"<td class=num>{cpu:.1f} s</td>{usage_cell('mem', round(mem, 1), st.mem_limit_bytes / 2**20)}"
            f"{usage_cell('disk', round(disk, 1), st.disk_limit_bytes / 2**20)}<td class=num>{st.processes}</td></tr>"
        )
    headers = ["task", "state", "cpu time", "memory (rss / limit)", "disk (used / limit)", "processes"]
    return table(headers, rows, table_id="usage")


def agent(row: AgentRow, tasks: TaskPage, usage: str = "") -> str:
    s = row.summary
    info = s.agent_info
    facts = [
        ("id", esc(info.id)),
        ("hostname", esc(info.hostname)),
        ("address", esc(info.address)),
        ("state", f'<span data-agent="{attr(info.id)}">{state_badge(row.state)}</span>'),
        ("principal", esc(info.principal or "—")),
        ("registered", when(s.registered_time)),
        ("re-registered", when(s.reregistered_time) or "—"),
        ("total", esc(resources_text(row.total))),
        ("allocated", esc(resources_text(row.allocated))),
        ("offered", esc(resources_text(Resources.flatten(Resources.from_proto(s.offered))))),
        ("reserved", esc(resources_text(_reserved(s)))),
    ]
    attrs = table(
        ["attribute", "value"], (f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in row.attributes.items())
    )
    return f"""{definitions(facts)}
<h2>Attributes</h2>{attrs}
<h2>Usage, as the agent measures it</h2>{usage}
<h2>Tasks</h2>{tasks_table(tasks, TaskFilter(agent=info.id))}"""


def _reserved(s: opb.AgentSummary) -> Resources:
    return Resources.from_proto(s.total).reserved()


# ------------------------------------------------------------------------------------------ frameworks
FRAMEWORK_HEADERS = ["framework", "name", "principal", "roles", "state", "tasks", "allocated", "offered", "registered"]


def framework_state(s: opb.FrameworkSummary) -> str:
    if not s.active:
        return "removed"
    return "connected" if s.connected else "disconnected"


def framework_tr(s: opb.FrameworkSummary, jobs_link: str = "") -> str:
    info = s.framework_info
    name = link(jobs_link, info.name) if jobs_link else esc(info.name)
    return (
        f'<tr data-framework="{attr(info.id)}"><td>{link(path("tasks", query={"framework": info.id}), info.id)}</td>'
        f"<td>{name}</td><td>{esc(info.principal or '—')}</td><td>{esc(', '.join(info.roles) or '*')}</td>"
        f"<td>{state_badge(framework_state(s))}</td><td class=num>{s.task_count}</td>"
        f"<td>{esc(resources_text(Resources.from_proto(s.allocated)))}</td>"
        f"<td>{esc(resources_text(Resources.from_proto(s.offered)))}</td><td>{when(s.registered_time)}</td></tr>"
    )


def frameworks(rows: Sequence[opb.FrameworkSummary], jobs_ids: frozenset[str] = frozenset()) -> str:
    trs = (framework_tr(s, "/jobs" if s.framework_info.id in jobs_ids else "") for s in rows)
    return table(FRAMEWORK_HEADERS, trs, table_id="frameworks")


# ------------------------------------------------------------------------------------------ tasks
TASK_HEADERS = ["task", "name", "state", "framework", "agent", "resources", "updated", "reason"]


def task_tr(r: TaskRow) -> str:
    key = f"{r.framework_id}/{r.task_id}"
    href = path("tasks", r.framework_id, r.task_id)
    agent_href = path("agents", r.agent_id)
    return (
        f'<tr data-task="{attr(key)}"><td><a data-field="task_id" href="{attr(href)}">{esc(r.task_id)}</a></td>'
        f'<td data-field="name">{esc(r.name)}</td><td>{state_badge(r.state)}</td>'
        f'<td data-field="framework_id">{esc(r.framework_id)}</td>'
        f'<td><a data-field="hostname" href="{attr(agent_href)}">{esc(r.hostname or r.agent_id)}</a></td>'
        f'<td data-field="resources">{esc(resources_text(r.resources))}</td>'
        f'<td data-field="updated">{when(r.updated_at)}</td>'
        f'<td data-field="reason" title="{attr(r.message)}">{esc(r.reason)}</td></tr>'
    )


#: The row the script fills in for a task that appears while the page is open.
TEMPLATE_ROW = TaskRow("", "", "", "TASK_STAGING", "", "", Resources.empty(), 0.0, "", "")


def tasks_table(page: TaskPage, wanted: TaskFilter) -> str:
    """The table of tasks: the script adds the tasks that match `wanted` as they appear, and updates every row."""
    data = {"filter-state": wanted.state, "filter-framework": wanted.framework}
    data |= {"filter-agent": wanted.agent, "filter-name": wanted.name, "live": "1"}
    more = (
        f"<p class=note>showing {len(page.rows)} of {page.matched} tasks: narrow the filters</p>"
        if page.matched > len(page.rows)
        else ""
    )
    return (
        more
        + table(TASK_HEADERS, (task_tr(r) for r in page.rows), table_id="tasks", data=data)
        + f'<template id="task-row">{task_tr(TEMPLATE_ROW)}</template>'
    )


def task_filters(page: TaskPage, wanted: TaskFilter) -> str:
    states = "".join(
        f'<option value="{attr(s)}"{" selected" if s == wanted.state else ""}>{esc(s or "any state")}</option>'
        for s in STATE_CHOICES
    )
    fws = "".join(
        f'<option value="{attr(fid)}"{" selected" if fid == wanted.framework else ""}>{esc(name or fid)}</option>'
        for fid, name in page.frameworks
    )
    return f"""<form id=filters class=filters method=get action="/tasks">
<label>state <select name=state>{states}</select></label>
<label>framework <select name=framework><option value="">any framework</option>{fws}</select></label>
<label>agent <input name=agent value="{attr(wanted.agent)}" placeholder="id or hostname"></label>
<label>name <input name=name value="{attr(wanted.name)}" placeholder="part of the name or id"></label>
<button type=submit>filter</button> <a href="/tasks">clear</a></form>"""


def tasks(page: TaskPage, wanted: TaskFilter) -> str:
    return task_filters(page, wanted) + tasks_table(page, wanted)


def task(t: Task, fw: Framework, hostname: str, files: Sequence[str], logs: Mapping[str, Tail], logs_error: str) -> str:
    key = f"{t.framework_id}/{t.task_id}"
    command = t.info.command
    facts = [
        ("task", esc(t.task_id)),
        ("name", esc(t.info.name)),
        ("state", f'<span data-task="{attr(key)}">{state_badge(state_name(t.state))}</span>'),
        ("framework", link(path("tasks", query={"framework": fw.id}), f"{fw.info.name} ({fw.id})")),
        ("agent", link(path("agents", t.agent_id), hostname or t.agent_id)),
        ("role", esc(t.role or "—")),
        ("resources", esc(resources_text(Resources.flatten(t.resources)))),
        ("user", esc(command.user or fw.info.user or "—")),
        ("command", f"<code>{esc(command.value or ' '.join(command.arguments))}</code>"),
    ]
    history = table(
        ["state", "time", "source", "reason", "message", "exit code"],
        (_status_tr(s) for s in reversed(t.statuses)),
        table_id="statuses",
        data={"history": key},
    )
    return f"""{definitions(facts)}
<h2>Status history</h2>{history}
<h2>Sandbox</h2>{logs_section(t, files, logs, logs_error)}"""


def _status_tr(s: tpb.TaskStatus) -> str:
    reason = tpb.TaskStatus.Reason.Name(s.reason) if s.reason else ""
    source = tpb.TaskStatus.Source.Name(s.source).removeprefix("SOURCE_").lower()
    code = exit_code(s)
    return (
        f"<tr><td>{state_badge(state_name(s.state), 'history')}</td><td>{when(s.timestamp)}</td><td>{esc(source)}</td>"
        f"<td>{esc(reason)}</td><td>{esc(s.message)}</td><td class=num>{esc('' if code is None else code)}</td></tr>"
    )


def logs_section(t: Task, files: Sequence[str], logs: Mapping[str, Tail], error: str) -> str:
    """The tail of each log file, each with a follow switch (the script streams what is appended after it)."""
    if error:
        return f"<p class=message id=logs-error>{esc(error)}</p>"
    listing = ", ".join(esc(f) for f in files) or "—"
    parts = [f"<p>files: {listing}</p>"]
    for name, tail in logs.items():
        follow = path("tasks", t.framework_id, t.task_id, "files", name, "follow", query={"offset": str(tail.end)})
        parts.append(
            f'<h3>{esc(name)} <button type=button class=follow data-follow="{attr(follow)}" '
            f'data-target="log-{attr(name)}">follow</button></h3>'
            f'<pre class=log id="log-{attr(name)}">{esc(tail.text)}</pre>'
        )
    return "\n".join(parts)


def login(error: str = "", next_path: str = "/") -> str:
    problem = f"<p class=message id=login-error>{esc(error)}</p>" if error else ""
    return f"""{problem}<form id=login method=post action="/login" class=login>
<input type=hidden name=next value="{attr(next_path)}">
<label>token <input type=password name=token id=token autocomplete=off autofocus></label>
<button type=submit id=login-submit>log in</button></form>
<p class=note>A bearer token of an operator or framework principal (<code>aiomesos certs token NAME</code>). A browser
with a client certificate from the cluster's CA is let in without one.</p>"""
