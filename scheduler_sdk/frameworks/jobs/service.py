"""The Jobs gRPC API (proto/aiomesos/v1/jobs.proto): validate, translate, call the core; no policy here.

Who may do what: any authenticated operator or framework principal may submit jobs and list them (the master
may list and read them, for its web UI, and submits none). A job is
replaced, stopped, and its spec (commands, environment) read, by the principal that submitted it or an operator
(PERMISSION_DENIED otherwise, naming both). A spec's role and user are authorised for the caller by the same ACLs
as the master's (`register_frameworks` for the role, `run_tasks` for the user): the service runs every job as one
framework, and must not let a caller run where the master would not let that caller run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

import grpc

from aiomesos.v1 import jobs_pb2 as jpb
from aiomesos.v1 import jobs_pb2_grpc
from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk._daemon.security import caller
from scheduler_sdk.frameworks.jobs.core import AnyRun, Job, JobError, JobsCore, run_counts
from scheduler_sdk.frameworks.jobs.service_run import Deployment, ServiceRun, address
from scheduler_sdk.frameworks.jobs.spec import JobSpec, SpecError
from scheduler_sdk.frameworks.jobs.store import RunRecord
from scheduler_sdk.frameworks.jobs.tasks import Slot
from scheduler_sdk.security.acls import Authorizer, audit

#: Who may call the Jobs service at all: operators and frameworks, and the master, which reads jobs for its web
#: UI (with its own certificate) and may not submit (a master owns no job, so it manages none either).
CALLERS = {"aiomesos.v1.Jobs": ("operator", "framework", "master")}
READ_ONLY_ROLES = ("master",)
_CODES = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "conflict": grpc.StatusCode.FAILED_PRECONDITION,
    "denied": grpc.StatusCode.PERMISSION_DENIED,
}
MAX_SPEC_BYTES = 1 << 20
MAX_INSTANCES = 1000  # a service's instances, a stream stage's workers

AgentTotals = Callable[[], Awaitable[Sequence[dict[str, float]] | None]]


class JobsServicer(jobs_pb2_grpc.JobsServicer):
    def __init__(
        self, core: JobsCore, agents: AgentTotals, *, secure: bool, authorizer: Authorizer | None = None
    ) -> None:
        self.core = core
        self.agents = agents  # every agent's totals, to refuse a spec no agent can run (None: unknown now)
        self.secure = secure
        self.authorizer = authorizer if authorizer is not None else Authorizer()

    def _who(self) -> str:
        principal = caller() if self.secure else None
        return str(principal) if principal is not None else ""

    def _is_operator(self) -> bool:
        """The caller is an operator (everyone is, on an insecure service)."""
        return not self.secure or self._who().startswith("operator/")

    def _may_manage(self, job: Job) -> bool:
        """The caller is the job's owner or an operator."""
        return self._is_operator() or self._who() == job.record.owner

    def _authorize_spec(self, spec: JobSpec) -> None:
        """The caller may run in the spec's role and as its users (JobError "denied" if not)."""
        if not self.secure:
            return
        principal = caller()
        checks = [("register_frameworks", spec.role)] + [("run_tasks", s.user) for s in spec.steps if s.user]
        for action, obj in checks:
            decision = audit(self.authorizer.authorize(principal, action, obj))
            if not decision.allowed:
                raise JobError(decision.message, "denied")

    async def Submit(self, request: jpb.SubmitJobRequest, context: grpc.aio.ServicerContext) -> jpb.SubmitJobResponse:
        if self._who().split("/")[0] in READ_ONLY_ROLES:
            await _abort(context, JobError(f"{self._who()} may read jobs, not submit them", "denied"))
        if len(request.spec_yaml.encode()) > MAX_SPEC_BYTES:
            await _abort(context, JobError(f"spec_yaml: at most {MAX_SPEC_BYTES} bytes"))
        try:
            agents = await self.agents()
            job, run, updated = self.core.submit(
                request.spec_yaml,
                request.filename,
                self._who(),
                agents,
                dry_run=request.dry_run,
                operator=self._is_operator(),
                authorize=self._authorize_spec,
            )
        except (SpecError, JobError) as e:
            await _abort(context, e)
        response = jpb.SubmitJobResponse(updated=updated)
        if job is not None:
            response.job_id = job.job_id
            response.next_run_at = job.record.next_run_at or 0.0
            response.version = job.version
        if run is not None:
            response.run_id = run.run_id
        return response

    async def ListJobs(self, request: jpb.ListJobsRequest, context: grpc.aio.ServicerContext) -> jpb.ListJobsResponse:
        return jpb.ListJobsResponse(jobs=[summary(job) for job in self.core.jobs.values()])

    async def GetJob(self, request: jpb.GetJobRequest, context: grpc.aio.ServicerContext) -> jpb.JobStatus:
        try:
            job = self.core.job(request.job_id)
        except JobError as e:
            await _abort(context, e)
        out = jpb.JobStatus(job=summary(job), spec_yaml=job.record.spec_yaml if self._may_manage(job) else "")
        records = [r for r in job.runs if r.data is not None]
        if request.run_id:
            records = [r for r in records if r.run_id == request.run_id]
            if not records:
                await _abort(context, JobError(f"job {job.job_id!r} has no run {request.run_id!r}", "not_found"))
        if records:
            rec = records[-1]
            run = self.core.finished_run(job, rec)
            out.run.CopyFrom(run_status(rec, run, self.core.scheduler.waiting_reasons()))
            if isinstance(run, ServiceRun) and run.deployment() is not None:
                out.deployment.CopyFrom(deployment_status(run.deployment()))
        return out

    async def StopJob(self, request: jpb.StopJobRequest, context: grpc.aio.ServicerContext) -> jpb.StopJobResponse:
        try:
            self._manage(request.job_id, "stop")
            stopped, kills = self.core.stop(request.job_id, f"stopped by {self._who() or 'a user'}")
        except JobError as e:
            await _abort(context, e)
        return jpb.StopJobResponse(run_id=",".join(stopped), killed=kills)

    async def JobHistory(
        self, request: jpb.JobHistoryRequest, context: grpc.aio.ServicerContext
    ) -> jpb.JobHistoryResponse:
        try:
            job = self.core.job(request.job_id)
        except JobError as e:
            await _abort(context, e)
        out = jpb.JobHistoryResponse(runs=[run_summary(job, r) for r in job.runs])
        run = self.core.latest_service_run(job)
        stable = run.stable_versions() if run is not None else set()
        readable = self._may_manage(job)
        for v in job.versions:
            out.versions.add(
                version=v.version,
                created_at=v.created_at,
                cause=v.cause,
                owner=v.owner,
                stable=v.version in stable,
                reverted_from=v.reverted_from,
                spec_yaml=v.spec_yaml if readable else "",
            )
        for d in run.deployments() if run is not None else []:
            out.deployments.append(deployment_status(d))
        return out

    async def ScaleJob(self, request: jpb.ScaleJobRequest, context: grpc.aio.ServicerContext) -> jpb.ScaleJobResponse:
        try:
            self._manage(request.job_id, "scale")
            if not 0 <= request.count <= MAX_INSTANCES:
                raise JobError(f"count: must be from 0 to {MAX_INSTANCES}, not {request.count}")
            previous, count = self.core.scale(request.job_id, request.count, request.stage)
        except JobError as e:
            await _abort(context, e)
        return jpb.ScaleJobResponse(previous=previous, count=count)

    async def PromoteJob(
        self, request: jpb.PromoteJobRequest, context: grpc.aio.ServicerContext
    ) -> jpb.PromoteJobResponse:
        try:
            self._manage(request.job_id, "promote")
            version = self.core.promote(request.job_id)
        except JobError as e:
            await _abort(context, e)
        return jpb.PromoteJobResponse(version=version)

    async def RevertJob(
        self, request: jpb.RevertJobRequest, context: grpc.aio.ServicerContext
    ) -> jpb.RevertJobResponse:
        try:
            self._manage(request.job_id, "revert")
            version, reverted_from = self.core.revert(
                request.job_id, request.version, self._who(), authorize=self._authorize_spec
            )
        except JobError as e:
            await _abort(context, e)
        return jpb.RevertJobResponse(version=version, reverted_from=reverted_from)

    async def GetEndpoints(
        self, request: jpb.GetEndpointsRequest, context: grpc.aio.ServicerContext
    ) -> jpb.GetEndpointsResponse:
        try:
            job = self.core.job(request.job_id)
            run = job.service_run()
            if not job.spec.long_running:
                raise JobError(
                    f"job {job.job_id!r} is a {job.spec.type} job: only services and streams have endpoints", "conflict"
                )
            if request.stage and all(s.name != request.stage for s in job.spec.steps):
                names = ", ".join(s.name for s in job.spec.steps)
                raise JobError(f"stage: job {job.job_id!r} has no stage {request.stage!r} (its stages: {names})")
        except JobError as e:
            await _abort(context, e)
        out = jpb.GetEndpointsResponse()
        for slot in run.endpoints(request.stage) if run is not None else []:
            out.endpoints.add(
                stage=slot.step,
                index=slot.index,
                host=slot.hostname,
                ports=list(slot.ports),
                address=address(slot),
                version=slot.version,
                task_id=slot.task_id,
                agent_id=slot.agent_id,
            )
        return out

    def _manage(self, job_id: str, what: str) -> Job:
        """The job, if the caller may manage it (JobError "denied" naming both if not)."""
        job = self.core.job(job_id)
        if not self._may_manage(job):
            raise JobError(
                f"{self._who()} may not {what} job {job.job_id!r} of {job.record.owner or 'nobody'} (only its owner "
                "or an operator may)",
                "denied",
            )
        return job


async def _abort(context: grpc.aio.ServicerContext, e: SpecError | JobError) -> NoReturn:
    code = _CODES[e.kind] if isinstance(e, JobError) else grpc.StatusCode.INVALID_ARGUMENT
    await context.abort(code, str(e))
    raise AssertionError("unreachable")  # context.abort raises


# ----------------------------------------------------------------------------------------- status messages


def summary(job: Job) -> jpb.JobSummary:
    spec, record = job.spec, job.record
    out = jpb.JobSummary(
        job_id=job.job_id,
        type=spec.type,
        role=spec.role,
        schedule=spec.schedule or "",
        next_run_at=record.next_run_at or 0.0,
        runs=len(job.runs),
        submitted_at=record.submitted_at,
        owner=record.owner,
    )
    runs = [r for r in job.runs if r.data is not None]
    if runs:
        latest = runs[-1]
        out.run_id = latest.run_id
        out.state = latest.state
        out.tasks, out.succeeded, out.failed, out.running = run_counts(job, latest)
    else:
        out.state = "scheduled" if spec.schedule else "pending"
    if record.stopped and not job.active:
        out.state = "stopped" if not runs or out.state in ("running", "pending") else out.state
    if spec.long_running:
        out.version = job.version
        run = job.service_run()
        if run is not None:
            out.healthy, out.instances = run.healthy_count(), run.wanted_count()
            deployment = run.deployment()
            out.deployment = deployment.state if deployment is not None else ""
    return out


def _run_fields(rec: RunRecord) -> dict[str, Any]:
    """What RunSummary and RunStatus both say of a run."""
    return {
        "run_id": rec.run_id,
        "state": rec.state,
        "created_at": rec.created_at,
        "ended_at": rec.ended_at or 0.0,
        "scheduled_for": rec.scheduled_for or 0.0,
        "trigger": rec.trigger,
    }


def run_summary(job: Job, rec: RunRecord) -> jpb.RunSummary:
    tasks, succeeded, failed, _ = run_counts(job, rec)
    return jpb.RunSummary(**_run_fields(rec), tasks=tasks, succeeded=succeeded, failed=failed)


def deployment_status(d: Deployment | None) -> jpb.DeploymentStatus:
    """The wire form of a run's deployment (its fields are named as DeploymentStatus's; None times are 0)."""
    if d is None:
        return jpb.DeploymentStatus()
    out = jpb.DeploymentStatus()
    for name in jpb.DeploymentStatus.DESCRIPTOR.fields_by_name:
        value = getattr(d, name, None)
        if value is not None:
            setattr(out, name, value)
    return out


def run_status(rec: RunRecord, run: AnyRun | None, waiting: dict[str, str]) -> jpb.RunStatus:
    out = jpb.RunStatus(**_run_fields(rec))
    if run is None:
        return out
    for step in run.spec.steps:
        out.steps.add(
            name=step.name,
            state=run.step_state(step.name),
            depends_on=list(step.depends_on),
            count=step.count,
            gang=step.gang,
        )
    for slot in run.slots():
        t = out.tasks.add(
            step=slot.step,
            index=slot.index,
            attempt=slot.attempt,
            state=slot.state,
            task_id=slot.task_id,
            agent_id=slot.agent_id,
            hostname=slot.hostname,
            started_at=slot.started_at or 0.0,
            ended_at=slot.ended_at or 0.0,
            message=slot.message,
            reason=_reason_name(slot.reason),
            why_waiting=waiting.get(slot.task_id, slot.why_waiting) if slot.state == "queued" else "",
        )
        if slot.exit_code is not None:
            t.exit_code = slot.exit_code
        if isinstance(run, ServiceRun):
            _instance_fields(t, slot, run)
        for n, a in enumerate(slot.attempts):
            att = t.attempts.add(
                attempt=n,
                task_id=a.task_id,
                state=_attempt_outcome(a.state),
                started_at=a.started_at or 0.0,
                ended_at=a.ended_at or 0.0,
                agent_id=a.agent_id,
                hostname=a.hostname,
                message=a.message,
            )
            if a.exit_code is not None:
                att.exit_code = a.exit_code
    return out


def _instance_fields(t: jpb.TaskSlot, slot: Slot, run: ServiceRun) -> None:
    """What a service instance (stream worker) adds to a task slot: version, health, ports, crash loop."""
    t.version, t.canary, t.failures = slot.version, slot.canary, slot.failures
    t.ports.extend(slot.ports)
    t.crash_looping = slot.failures >= run.spec.restart.crash_loop
    if slot.state == "running":
        t.health = {True: "healthy", False: "unhealthy", None: ""}[slot.healthy]


def _attempt_outcome(task_state: str) -> str:
    """An earlier attempt as the slots say it: succeeded, dropped (relaunched without using a retry) or failed
    (its status message says how: an exit code, a timeout, a lost agent...)."""
    return {"TASK_FINISHED": "succeeded", "TASK_DROPPED": "dropped"}.get(task_state, "failed")


def _reason_name(reason: int) -> str:
    if not reason:
        return ""
    try:
        return tpb.TaskStatus.Reason.Name(reason)  # type: ignore[arg-type]
    except ValueError:
        return str(reason)
