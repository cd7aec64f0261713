"""The jobs pages: jobs and their runs, read from the jobs service by the master.

The jobs service says where its Jobs API is in its FrameworkInfo (the label `scheduler_sdk.frameworks.jobs.client
.API_LABEL`); the master calls it with its own certificate (the service lets `master/*` principals read, never
submit). A page shows the jobs of a jobs service only to a principal that may see that framework
(view_frameworks), and never a job's spec (the service sends it only to the job's owner or an operator)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aiomesos.v1 import jobs_pb2 as jpb
from mesos_master.cluster import Master
from mesos_master.webui.live import exit_code
from mesos_master.webui.markup import attr, definitions, esc, link, path, state_badge, table, when
from mesos_master.webui.model import dag_layers
from scheduler_sdk.frameworks.jobs.client import JobsClient, JobsError, api_address
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.states import state_name

#: Seconds the jobs service has to answer a page.
JOBS_TIMEOUT = 3.0
#: The most jobs services one page dials.
MAX_JOBS_SERVICES = 8


@dataclass(frozen=True)
class JobsService:
    framework_id: str
    name: str
    address: str


def jobs_services(
    master: Master,
    visible: Callable[[str], bool],
    trusted: Callable[[str], bool],
    limit: int = MAX_JOBS_SERVICES,
) -> list[JobsService]:
    """The jobs services subscribed now whose frameworks the viewer may see, at most `limit`. Only a framework
    whose principal is `trusted` (`--jobs-principals`) is taken at its label's word: the master dials the
    address with its own certificate, so any other framework could make it dial anywhere."""
    found = []
    for fw in master.frameworks.values():
        if not trusted(fw.info.principal):
            continue
        address = api_address(fw.info)
        if address and visible(fw.info.principal):
            found.append(JobsService(fw.id, fw.info.name, address))
    return sorted(found, key=lambda s: s.framework_id)[:limit]


def client(service: JobsService, config: ClientConfig | None) -> JobsClient:
    return JobsClient(service.address, config=config if config is not None else ClientConfig(), timeout=JOBS_TIMEOUT)


async def list_jobs(service: JobsService, config: ClientConfig | None) -> list[jpb.JobSummary]:
    async with client(service, config) as jobs:
        return await jobs.list_jobs()


async def get_job(service: JobsService, config: ClientConfig | None, job_id: str) -> jpb.JobStatus:
    async with client(service, config) as jobs:
        return await jobs.get_job(job_id)


# ------------------------------------------------------------------------------------------ pages
JOB_HEADERS = ["job", "type", "state", "role", "owner", "tasks", "succeeded", "failed", "running", "runs", "submitted"]


def _job_state(state: str) -> str:
    return state_badge(state or "—")


def jobs_page(listed: Sequence[tuple[JobsService, Sequence[jpb.JobSummary] | None, str]]) -> str:
    """Each jobs service's jobs (or why they could not be read)."""
    if not listed:
        return "<p class=message>No jobs service is subscribed to this master (or you may not see it).</p>"
    parts = []
    for service, jobs, error in listed:
        parts.append(
            f"<h2>{esc(service.name)} <small>{esc(service.framework_id)} at {esc(service.address)}</small></h2>"
        )
        if jobs is None:
            parts.append(f"<p class=message>cannot read the jobs: {esc(error)}</p>")
            continue
        rows = (
            f'<tr data-job="{attr(j.job_id)}"><td>{link(path("jobs", service.framework_id, j.job_id), j.job_id)}</td>'
            f"<td>{esc(j.type)}</td><td>{_job_state(j.state)}</td><td>{esc(j.role)}</td><td>{esc(j.owner or '—')}</td>"
            f"<td class=num>{j.tasks}</td><td class=num>{j.succeeded}</td><td class=num>{j.failed}</td>"
            f"<td class=num>{j.running}</td><td class=num>{j.runs}</td><td>{when(j.submitted_at)}</td></tr>"
            for j in jobs
        )
        parts.append(table(JOB_HEADERS, rows, table_id="jobs"))
    return "\n".join(parts)


def dag(run: jpb.RunStatus) -> str:
    """A workflow's steps in layers, left to right, each with its state and what it waits for."""
    steps = {s.name: s for s in run.steps}
    layers = dag_layers([(s.name, list(s.depends_on)) for s in run.steps])
    columns = []
    for layer in layers:
        boxes = "".join(
            f'<div class="step" data-step="{attr(name)}"><b>{esc(name)}</b> {state_badge(steps[name].state)}'
            f"<small>{esc('after ' + ', '.join(steps[name].depends_on) if steps[name].depends_on else 'first')}"
            f"{esc(f' · {steps[name].count} tasks' if steps[name].count > 1 else '')}</small></div>"
            for name in layer
        )
        columns.append(f"<div class=layer>{boxes}</div>")
    return f"<div class=dag id=dag>{'<span class=arrow>→</span>'.join(columns)}</div>"


TASK_HEADERS = ["step", "index", "attempt", "state", "task", "mesos state", "host", "exit code", "message"]


def _slot_tr(slot: jpb.TaskSlot, framework_id: str, mesos_states: Mapping[str, int]) -> str:
    key = f"{framework_id}/{slot.task_id}"
    task_link = link(path("tasks", framework_id, slot.task_id), slot.task_id) if slot.task_id else ""
    mesos = state_badge(state_name(mesos_states[slot.task_id]) if slot.task_id in mesos_states else "—")
    code = exit_code(slot)
    return (
        f'<tr data-task="{attr(key)}"><td>{esc(slot.step)}</td><td class=num>{slot.index}</td>'
        f"<td class=num>{slot.attempt}</td><td>{state_badge(slot.state, 'slot')}</td><td>{task_link}</td>"
        f"<td>{mesos}</td><td>{esc(slot.hostname)}</td><td class=num>{esc('' if code is None else code)}</td>"
        f"<td>{esc(slot.message or slot.why_waiting)}</td></tr>"
    )


def job_page(service: JobsService, status: jpb.JobStatus, mesos_states: Mapping[str, int]) -> str:
    """A job: its summary, its latest run (a workflow's DAG) and the run's tasks, each linked to its task page;
    `mesos_states`: the master's state of each of the run's tasks it knows (task id -> TaskState)."""
    j = status.job
    facts = [
        ("job", esc(j.job_id)),
        ("type", esc(j.type)),
        ("state", _job_state(j.state)),
        ("role", esc(j.role)),
        ("owner", esc(j.owner or "—")),
        ("submitted", when(j.submitted_at)),
        ("schedule", esc(j.schedule or "—")),
        ("runs", esc(j.runs)),
    ]
    if j.instances:
        facts.append(("instances", esc(f"{j.healthy} healthy of {j.instances} (version {j.version})")))
    body = [definitions(facts)]
    if not status.HasField("run"):
        body.append("<p class=message>no run yet</p>")
        return "\n".join(body)
    run = status.run
    body.append(f"<h2>Run {esc(run.run_id)} {state_badge(run.state, 'run')}</h2>")
    body.append(
        definitions(
            [("started", when(run.created_at)), ("ended", when(run.ended_at) or "—"), ("trigger", esc(run.trigger))]
        )
    )
    if len(run.steps) > 1 or any(s.depends_on for s in run.steps):
        body.append("<h3>Steps</h3>" + dag(run))
    rows = (_slot_tr(s, service.framework_id, mesos_states) for s in run.tasks)
    body.append("<h3>Tasks</h3>" + table(TASK_HEADERS, rows, table_id="job-tasks"))
    return "\n".join(body)


__all__ = [
    "MAX_JOBS_SERVICES",
    "JobsError",
    "JobsService",
    "get_job",
    "job_page",
    "jobs_page",
    "jobs_services",
    "list_jobs",
]
