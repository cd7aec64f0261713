"""The jobs service's core: jobs and their runs, between the store, the run state machines and the placement.

Everything that changes a run goes the same way: the run's state machine (run.py) is told (a submit, a status
update, a tick, a stop) and answers with actions; the run's new state is written to the store; then the actions
are carried out (launches queued in the placement, kills sent). Written first, acted on second: a service killed in
between finds, on restart, a run that says what it meant to do, and reconciles it with the master.

Restart: every run in progress is read back. Its tasks that were launched or handed to the placement are adopted
(tracked, not launched again) and reconciled explicitly with the master once subscribed; the answers are the truth
(a task the master never heard of was never launched: it is launched now, without using a retry).

Cron: a job with a schedule fires at each of its times (cron.py); `last_fire` is written with the run it starts
(or the time it skips, overlap skip), in one transaction, so that one time never fires twice. Times missed while
the service was down run once (on_missed run_once) or are recorded as skipped (skip)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.driver import SchedulerDriver
from scheduler_sdk.frameworks.jobs.cron import CronSchedule
from scheduler_sdk.frameworks.jobs.placement import JobsScheduler
from scheduler_sdk.frameworks.jobs.run import Kill, Launch, Run, TaskLaunch
from scheduler_sdk.frameworks.jobs.service_run import ServiceRun
from scheduler_sdk.frameworks.jobs.spec import JobSpec, check_fits, parse_spec, spec_diff
from scheduler_sdk.frameworks.jobs.store import JobRecord, JobStore, RunRecord, VersionRecord
from scheduler_sdk.frameworks.jobs.tasks import Message, Revert
from scheduler_sdk.states import TERMINAL_STATES

log = structlog.get_logger(__name__)

#: A cron job's missed times are looked for at most this far back.
MISSED_HORIZON = 366 * 24 * 3600.0
#: Seconds between sending again the kills not yet answered with a terminal status (one may have been lost).
KILL_RESEND = 5.0
#: Seconds between asking again about tasks read back at start that the master has not answered.
RECONCILE_AGAIN = 30.0


class JobError(Exception):
    """A request the service refuses; `kind` is how (the gRPC layer maps it to a status code)."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind  # invalid | not_found | conflict | denied


AnyRun = Run | ServiceRun


@dataclass
class Job:
    record: JobRecord
    spec: JobSpec
    cron: CronSchedule | None
    runs: list[RunRecord] = field(default_factory=list)  # every run (and skipped time), oldest first
    active: dict[str, AnyRun] = field(default_factory=dict)  # run id -> the run's state machine, while it runs
    versions: list[VersionRecord] = field(default_factory=list)  # services and streams: every version, oldest first
    _specs: dict[int, JobSpec] = field(default_factory=dict)  # versions parsed so far

    @property
    def job_id(self) -> str:
        return self.record.job_id

    @property
    def version(self) -> int:
        """The latest version (0: a batch job or workflow, which have none)."""
        return self.versions[-1].version if self.versions else 0

    def version_record(self, version: int) -> VersionRecord | None:
        return next((v for v in self.versions if v.version == version), None)

    def spec_of(self, version: int) -> JobSpec:
        """The spec of a version (KeyError: no such version), parsed once."""
        spec = self._specs.get(version)
        if spec is None:
            v = self.version_record(version)
            if v is None:
                raise KeyError(version)
            spec = self._specs[version] = parse_spec(v.spec_yaml, v.filename)
        return spec

    def service_run(self) -> ServiceRun | None:
        """A service's (stream's) run in progress (it has at most one)."""
        return next((r for r in self.active.values() if isinstance(r, ServiceRun)), None)


class _Specs(Mapping[int, JobSpec]):
    """A job's specs by version, each parsed when first asked for (a service run reads the versions it refers to)."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def __getitem__(self, version: int) -> JobSpec:
        return self.job.spec_of(version)

    def __iter__(self) -> Iterator[int]:
        return (v.version for v in self.job.versions)

    def __len__(self) -> int:
        return len(self.job.versions)


def _cron_of(spec: JobSpec) -> CronSchedule | None:
    return CronSchedule.parse(spec.schedule) if spec.schedule else None


class JobsCore:
    def __init__(
        self,
        store: JobStore,
        scheduler: JobsScheduler,
        *,
        clock: Callable[[], float] = time.time,
        cron_clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.clock = clock  # unix seconds, for runs (timeouts, backoffs) and records
        self.cron_clock = cron_clock or clock  # unix seconds, for cron times (a test may drive it)
        self.jobs: dict[str, Job] = {}
        self.runs_by_prefix: dict[str, tuple[Job, AnyRun]] = {}  # "job.run" -> the active run
        self._to_reconcile: dict[str, str] = {}  # task id -> agent id: read back at start, not answered yet
        self.driver: SchedulerDriver | None = None
        self._asked_at = 0.0  # when the unanswered reconciliations were last asked
        self._kills_at = clock()  # when outstanding kills were last sent (again)

    # ------------------------------------------------------------------ start
    def load(self) -> None:
        """Read every job and run back from the store (at start, before subscribing): runs in progress carry on,
        their tasks are adopted (launched, or maybe launched) and reconciled, or queued again when they cannot
        have been launched; a run written but not started is started; kills decided are sent again."""
        for record in self.store.jobs():
            spec = parse_spec(record.spec_yaml, record.filename)
            job = Job(record, spec, _cron_of(spec), self.store.runs(record.job_id))
            job.versions = self.store.versions(record.job_id) if spec.long_running else []
            self.jobs[record.job_id] = job
        now = self.clock()
        for rec in self.store.active_runs():
            owner = self.jobs.get(rec.job_id)
            if owner is None or rec.data is None:
                continue
            run = self._read_run(owner, rec)
            self._activate(owner, run)
            if run.state == "pending":  # written, then killed before it started
                self._start(owner, run, now)
                continue
            self._resume(run, now)
            for kill in run.kills_outstanding():
                self.scheduler.kill(kill.task_id)
            revert = run.pending_revert() if isinstance(run, ServiceRun) else None
            if revert is not None:  # decided, then killed before the new version was made
                self._auto_revert(owner, revert)
        self._kills_at = now  # sent just now: again only if not answered within KILL_RESEND
        log.info(
            "jobs loaded", jobs=len(self.jobs), active_runs=len(self.runs_by_prefix), tasks=len(self._to_reconcile)
        )

    def _resume(self, run: AnyRun, now: float) -> None:
        queued_again = []
        for slot in run.slots():
            if slot.state not in ("queued", "staging", "running") or not slot.task_id:
                continue
            launch = run.launch_for(slot.task_id)
            if launch is None:
                continue
            if slot.state == "queued" and launch.ready_at > now:
                queued_again.append(launch)  # still in its backoff: it cannot have been launched yet
                continue
            self.scheduler.adopt(launch, slot.agent_id)
            self._to_reconcile[slot.task_id] = slot.agent_id
        if queued_again:
            self.scheduler.submit(queued_again)

    def _read_run(self, job: Job, rec: RunRecord) -> AnyRun:
        assert rec.data is not None
        slots = self.store.slots(rec.job_id, rec.run_id)
        run: AnyRun
        if job.spec.long_running:
            run = ServiceRun.from_parts(rec.data, slots, _Specs(job))
        else:
            spec = job.spec if rec.spec_yaml == job.record.spec_yaml else parse_spec(rec.spec_yaml, job.record.filename)
            run = Run.from_parts(rec.data, slots, spec)
        run.mark_clean()
        return run

    def finished_run(self, job: Job, rec: RunRecord) -> AnyRun | None:
        """A run's state machine, read from the store (for a run that has ended), or the live one."""
        run = job.active.get(rec.run_id)
        if run is None and rec.data is not None:
            run = self._read_run(job, rec)
        return run

    def reconcile(self, driver: SchedulerDriver) -> None:
        """Once subscribed: ask the master about every task read back at start not answered yet."""
        self.driver = driver
        if self._to_reconcile:
            driver.reconcile(list(self._to_reconcile.items()))
            self._asked_at = self.clock()
            log.info("reconciling tasks read back at start", tasks=len(self._to_reconcile))

    def orphan(self, status: tpb.TaskStatus) -> None:
        """An update of a task of ours that no run tracks (an attempt superseded, a run that ended, a stop whose
        kill was lost): it has no business running."""
        if status.state in TERMINAL_STATES or self.driver is None:
            return
        log.warning("killing a task no run tracks", task_id=status.task_id, agent_id=status.agent_id)
        self.driver.kill(status.task_id, status.agent_id)

    def roles(self) -> list[str]:
        return sorted({job.spec.role for job in self.jobs.values()})

    # ------------------------------------------------------------------ requests
    def submit(
        self,
        spec_yaml: str,
        filename: str,
        owner: str,
        agents: Sequence[dict[str, float]] | None,
        *,
        dry_run: bool = False,
        operator: bool = False,
        authorize: Callable[[JobSpec], None] | None = None,
    ) -> tuple[Job | None, AnyRun | None, bool]:
        """A new job, or a new spec for one; starts a run unless the job is a cron job. Raises SpecError (bad
        spec, or it cannot fit `agents`) or JobError (`authorize`, given the parsed spec, may raise it too).
        Returns (job, run started or None, updated)."""
        spec = parse_spec(spec_yaml, filename)
        if authorize is not None:
            authorize(spec)
        if agents is not None:
            check_fits(spec, agents)
        job = self.jobs.get(spec.name)
        if job is not None:
            if owner != job.record.owner and not operator:
                raise JobError(
                    f"{owner or 'nobody'} may not replace job {spec.name!r} of {job.record.owner or 'nobody'} (only "
                    "its owner or an operator may)",
                    "denied",
                )
            if job.spec.type != spec.type:
                raise JobError(
                    f"job {spec.name!r} is a {job.spec.type} job; a spec may not change its type to {spec.type} "
                    f"(stop it and submit under another name)",
                    "invalid",
                )
            if job.active and not spec.schedule and not spec.long_running:
                ids = ", ".join(sorted(job.active))
                raise JobError(
                    f"job {spec.name!r} has a run in progress (run {ids}): `aiomesos job stop {spec.name}` first",
                    "conflict",
                )
        if dry_run:
            return None, None, job is not None
        now = self.clock()
        updated = job is not None
        if spec.long_running and job is not None:
            current = job.service_run()
            if current is not None and job.record.stopped:
                raise JobError(
                    f"job {spec.name!r} is still stopping: run it again once `aiomesos job status {spec.name}` says "
                    "stopped",
                    "conflict",
                )
            if current is not None and spec_diff(current.spec, spec) == "none":  # the run's spec: scaled counts
                return job, current, True  # nothing to roll out: no new version
        record = JobRecord(spec.name, spec_yaml, filename, owner, now)
        if job is not None:
            record.runs, record.last_fire = job.record.runs, job.record.last_fire
            job.record, job.spec, job.cron = record, spec, _cron_of(spec)
        else:
            job = self.jobs[spec.name] = Job(record, spec, _cron_of(spec))
        if spec.long_running:
            return job, self._submit_version(job, spec, "submit", 0, owner, now), updated
        run = None
        with self.store.transaction():
            if job.cron is not None:
                base = max(self.cron_clock(), record.last_fire or 0.0)
                record.next_run_at = job.cron.next_after(base, spec.time_zone)
                if record.last_fire is None:
                    record.last_fire = self.cron_clock()
                self.store.put_job(record)
            else:
                self.store.put_job(record)
                run = self._new_run(job, "submit", None, now)
        if run is not None:
            self._start(job, run, now)
        log.info(
            "job submitted", job_id=spec.name, type=spec.type, owner=owner, updated=updated, run_id=run and run.run_id
        )
        return job, run, updated

    def stop(self, job_id: str, why: str) -> tuple[list[str], int]:
        """Stop a job: its schedule, and every run in progress (tasks killed). Returns (run ids, kills sent)."""
        job = self.job(job_id)
        now = self.clock()
        stopped, kills, decided = [], 0, []
        with self.store.transaction():  # the schedule and every run stop together, or not at all
            job.record.stopped = True
            job.record.next_run_at = None
            self.store.put_job(job.record)
            for run in list(job.active.values()):
                actions = run.stop(now, why)
                kills += sum(1 for a in actions if isinstance(a, Kill))
                self._save(job, run)
                decided.append((run, actions))
                stopped.append(run.run_id)
        for run, actions in decided:
            self._apply(job, run, actions)
        log.info("job stopped", job_id=job_id, runs=stopped, kills=kills)
        return stopped, kills

    def job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobError(f"no job {job_id!r}", "not_found")
        return job

    # ------------------------------------------------------------------ services and streams
    def _submit_version(
        self, job: Job, spec: JobSpec, cause: str, reverted_from: int, owner: str, now: float
    ) -> AnyRun:
        """A new version of a service (stream), written with the job; rolled out by its run in progress, or by a
        new run when none is in progress (a new job, or one stopped)."""
        version = job.version + 1
        rec = VersionRecord(job.job_id, version, spec.source, spec.filename, owner, now, cause, reverted_from)
        current = job.service_run()
        run: AnyRun
        with self.store.transaction():
            job.record.spec_yaml, job.record.filename, job.record.stopped = spec.source, spec.filename, False
            job.versions.append(rec)
            job._specs[version] = spec
            job.spec = spec
            self.store.put_version(rec)
            self.store.put_job(job.record)
            if current is None:
                run = self._new_run(job, cause, None, now)
                actions = run.start(now)
            else:
                run, actions = current, current.update(spec, version, now)
            self._save(job, run)
        log.info("job version", job_id=job.job_id, version=version, cause=cause, run_id=run.run_id)
        self._apply(job, run, actions)
        return run

    def _long_run(self, job_id: str) -> tuple[Job, ServiceRun]:
        job = self.job(job_id)
        if not job.spec.long_running:
            raise JobError(f"job {job_id!r} is a {job.spec.type} job: only services and streams do that", "conflict")
        run = job.service_run()
        if run is None or job.record.stopped:
            raise JobError(f"job {job_id!r} is not running (stopped): submit it again first", "conflict")
        return job, run

    def scale(self, job_id: str, count: int, stage: str = "") -> tuple[int, int]:
        """A service's instances (a stream stage's workers): (before, now). JobError for a bad count or stage."""
        job, run = self._long_run(job_id)
        step = stage or (job.spec.steps[0].name if len(job.spec.steps) == 1 else "")
        if not step:
            names = ", ".join(s.name for s in run.spec.steps)
            raise JobError(f"job {job_id!r} is a stream of several stages: name one with --stage ({names})")
        before = next((s.count for s in run.spec.steps if s.name == step), None)
        try:
            previous = sum(1 for s in run.slots() if s.step == step and not s.retired)
            actions = run.scale(count, self.clock(), step)
        except ValueError as e:
            raise JobError(str(e)) from None
        self._apply(job, run, actions)
        log.info("job scaled", job_id=job_id, stage=step, previous=previous, count=count, spec_count=before)
        return previous, count

    def promote(self, job_id: str) -> int:
        job, run = self._long_run(job_id)
        try:
            actions = run.promote(self.clock())
        except ValueError as e:
            raise JobError(f"job {job_id!r}: {e}", "conflict") from None
        self._apply(job, run, actions)
        return run.version

    def revert(
        self, job_id: str, version: int, owner: str, *, authorize: Callable[[JobSpec], None] | None = None
    ) -> tuple[int, int]:
        """A new version with the spec of `version`: (the new version, version). `authorize` (given the spec) may
        refuse it with JobError, as for a submit: the caller must be allowed to run it now."""
        job, run = self._long_run(job_id)
        old = job.version_record(version)
        if old is None:
            known = ", ".join(str(v.version) for v in job.versions)
            raise JobError(f"job {job_id!r} has no version {version} (its versions: {known})", "not_found")
        if version == run.version:
            raise JobError(f"job {job_id!r} runs version {version} already", "conflict")
        if authorize is not None:
            authorize(job.spec_of(version))
        self._submit_version(job, job.spec_of(version), "revert", version, owner, self.clock())
        return job.version, version

    def latest_service_run(self, job: Job) -> ServiceRun | None:
        """A service's run in progress, else its latest run as stored (for versions and deployments)."""
        run = job.service_run()
        if run is None and job.spec.long_running:
            rec = next((r for r in reversed(job.runs) if r.data is not None), None)
            found = self.finished_run(job, rec) if rec is not None else None
            run = found if isinstance(found, ServiceRun) else None
        return run

    def draining(self, agent_id: str) -> None:
        """An agent drains: the services on it move their instances elsewhere."""
        now = self.clock()
        for job, run in list(self.runs_by_prefix.values()):
            if isinstance(run, ServiceRun):
                self._apply(job, run, run.draining(agent_id, now))

    def _auto_revert(self, job: Job, revert: Revert) -> None:
        log.warning("update failed: reverting", job_id=job.job_id, to_version=revert.version, why=revert.reason)
        if job.version_record(revert.version) is None:
            return
        if spec_diff(job.spec, job.spec_of(revert.version)) in ("none", "scale"):
            # the failing version runs what the stable one does (a revert of a revert): nothing to go back to
            log.warning("no revert: the stable version runs the same tasks", job_id=job.job_id, to=revert.version)
            return
        self._submit_version(job, job.spec_of(revert.version), "auto-revert", revert.version, "", self.clock())

    def _message(self, m: Message) -> None:
        if self.driver is None:
            return  # not subscribed: the run tells the worker again when its upstream next changes
        self.driver.message(m.agent_id, m.task_id, m.data, path=m.path)

    # ------------------------------------------------------------------ events
    def on_update(self, launch: TaskLaunch, status: tpb.TaskStatus) -> None:
        """A status update of one of our tasks (called before it is acknowledged)."""
        prefix = f"{launch.job_id}.{launch.run_id}"
        found = self.runs_by_prefix.get(prefix)
        if found is None:
            return
        job, run = found
        self._to_reconcile.pop(status.task_id, None)
        actions = run.on_status(
            status.task_id,
            status.state,
            self.clock(),
            exit_code=status.exit_code if status.HasField("exit_code") else None,
            reason=status.reason,
            message=status.message,
            agent_id=status.agent_id,
            hostname=self.scheduler.hostname(status.agent_id),
            healthy=status.healthy if status.HasField("healthy") else None,
            ports=self.scheduler.ports(status.task_id),
            host=self.scheduler.agent_host(status.agent_id),
        )
        if status.state not in TERMINAL_STATES and run.launch_for(status.task_id) is None:
            # an attempt superseded (a service instance replaced while its agent was unreachable, and back now)
            log.warning("killing a superseded attempt", task_id=status.task_id, agent_id=status.agent_id)
            self.scheduler.kill(status.task_id)
        self._apply(job, run, actions)

    def tick(self) -> None:
        """Timeouts and backoffs of the runs, and cron times (called a few times a second)."""
        now = self.clock()
        if now - self._kills_at >= KILL_RESEND:  # first: the kills decided below are sent once now
            self._kills_at = now
            for _, run in list(self.runs_by_prefix.values()):
                for kill in run.kills_outstanding():
                    self.scheduler.kill(kill.task_id)  # a kill is idempotent; one may have been lost
        for job, run in list(self.runs_by_prefix.values()):
            deadline = run.next_deadline()
            if deadline is not None and deadline <= now:
                self._apply(job, run, run.tick(now))
        if self._to_reconcile and self.driver is not None and now - self._asked_at >= RECONCILE_AGAIN:
            self.reconcile(self.driver)  # the master may have dropped some unanswered
        cron_now = self.cron_clock()
        for job in self._due(cron_now):
            self._fire(job, cron_now, missed=False)

    def catch_up(self) -> None:
        """At start: cron times that passed while the service was down (see the module docstring)."""
        cron_now = self.cron_clock()
        for job in self._due(cron_now):
            self._fire(job, cron_now, missed=True)

    def _due(self, cron_now: float) -> list[Job]:
        """Cron jobs whose next time has come."""
        return [
            job
            for job in self.jobs.values()
            if job.cron is not None
            and not job.record.stopped
            and job.record.next_run_at is not None
            and job.record.next_run_at <= cron_now
        ]

    # ------------------------------------------------------------------ cron
    def _fire(self, job: Job, cron_now: float, *, missed: bool) -> None:
        spec, record, next_at = job.spec, job.record, job.record.next_run_at
        assert job.cron is not None and next_at is not None
        since = max(record.last_fire or 0.0, cron_now - MISSED_HORIZON)
        # Several times due at once (missed, or a clock jump): one run, for the latest.
        fire_at = _latest_due(job.cron, since, cron_now, spec.time_zone) or next_at
        now = self.clock()
        run = None
        with self.store.transaction():
            record.last_fire = fire_at
            record.next_run_at = job.cron.next_after(fire_at, spec.time_zone)
            trigger = "missed" if missed else "cron"
            if missed and spec.on_missed == "skip":
                self._skipped(job, fire_at, "missed", now)
            elif job.active and spec.overlap == "skip":
                self._skipped(job, fire_at, trigger, now)
            else:
                run = self._new_run(job, trigger, fire_at, now)
            self.store.put_job(record)
        log.info("cron fired", job_id=job.job_id, at=fire_at, run_id=run and run.run_id, trigger=trigger)
        if run is not None:
            self._start(job, run, now)

    def _skipped(self, job: Job, fire_at: float, trigger: str, now: float) -> None:
        job.record.runs += 1
        rec = RunRecord(
            job.job_id,
            str(job.record.runs),
            job.record.runs,
            "skipped",
            trigger,
            now,
            job.record.spec_yaml,
            fire_at,
            now,
        )
        self.store.put_run(rec)
        job.runs.append(rec)

    # ------------------------------------------------------------------ runs
    def _new_run(self, job: Job, trigger: str, scheduled_for: float | None, now: float) -> AnyRun:
        """A run made and written (inside the caller's transaction); started by `_start` after the commit."""
        job.record.runs += 1
        run_id = str(job.record.runs)
        run: AnyRun
        if job.spec.long_running:
            run = ServiceRun(job.job_id, run_id, job.spec, now, version=job.version)
        else:
            run = Run(job.job_id, run_id, job.spec, now)
        rec = RunRecord(
            job.job_id, run_id, job.record.runs, run.state, trigger, now, job.record.spec_yaml, scheduled_for
        )
        job.runs.append(rec)
        self._save(job, run)
        self.store.put_job(job.record)
        self._activate(job, run)
        return run

    def _activate(self, job: Job, run: AnyRun) -> None:
        job.active[run.run_id] = run
        self.runs_by_prefix[f"{job.job_id}.{run.run_id}"] = (job, run)

    def _start(self, job: Job, run: AnyRun, now: float) -> None:
        self._apply(job, run, run.start(now))

    def _apply(self, job: Job, run: AnyRun, actions: Sequence[object]) -> None:
        """Write the run's state, then carry out its actions."""
        self._save(job, run)
        launches = [a.task for a in actions if isinstance(a, Launch)]
        if launches:
            self.scheduler.submit(launches)
        reverts = []
        for a in actions:
            if isinstance(a, Kill):
                self.scheduler.kill(a.task_id)
            elif isinstance(a, Message):
                self._message(a)
            elif isinstance(a, Revert):
                reverts.append(a)
        for revert in reverts:
            self._auto_revert(job, revert)
        if run.done:
            job.active.pop(run.run_id, None)
            self.runs_by_prefix.pop(f"{job.job_id}.{run.run_id}", None)
            log.info("run ended", job_id=job.job_id, run_id=run.run_id, state=run.state)

    def _save(self, job: Job, run: AnyRun) -> None:
        """The run's header and the slots that changed since the last save, in one transaction."""
        rec = next((r for r in reversed(job.runs) if r.run_id == run.run_id), None)  # runs in progress are last
        if rec is None:
            return
        rec.state, rec.ended_at, rec.data = run.state, run.ended_at, run.header()
        if run.done:  # while it runs, the counts come from the run itself (`run_counts`): no scan on every update
            rec.tasks, rec.succeeded, rec.failed, rec.running = _counts(run)
        with self.store.transaction():
            self.store.put_run(rec)
            self.store.put_slots(job.job_id, run.run_id, run.take_dirty())


def _latest_due(cron: CronSchedule, since: float, now: float, tz: str) -> float | None:
    """The latest fire time in (since, now], looked for in widening windows back from now, so that an every-minute
    job down for a year is one short look, not half a million times listed."""
    for window in (60.0, 3600.0, 86400.0, 32 * 86400.0, MISSED_HORIZON):
        latest = None
        for t in cron.times_between(max(since, now - window), now, tz):
            latest = t
        if latest is not None or now - window <= since:
            return latest
    return None


def run_counts(job: Job, rec: RunRecord) -> tuple[int, int, int, int]:
    """(tasks, succeeded, failed, running) of a run: from the live run while it runs, else as stored."""
    run = job.active.get(rec.run_id)
    if run is not None:
        return _counts(run)
    return rec.tasks, rec.succeeded, rec.failed, rec.running


def _counts(run: AnyRun) -> tuple[int, int, int, int]:
    """(tasks, succeeded, failed, running) of a run's slots."""
    slots = run.slots()
    return (
        len(slots),
        sum(1 for s in slots if s.state == "succeeded"),
        sum(1 for s in slots if s.state == "failed"),
        sum(1 for s in slots if s.state in ("staging", "running")),
    )
