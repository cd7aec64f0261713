"""The jobs core with services: versions written with the job and read back after a crash, a changed spec rolled
out by the run in progress, scale / promote / revert refused with a reason when they cannot apply, and an
auto-revert made into a new version. The real core and a real SQLite store; the placement records what it is
asked (tests/unit/scheduler_sdk/test_jobs_core_restart.py's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from scheduler_sdk.frameworks.jobs.core import JobError, JobsCore
from scheduler_sdk.frameworks.jobs.service_run import ServiceRun
from tests.unit.scheduler_sdk.test_jobs_core_restart import Clock, Placement, report, start


def web(greeting: str, instances: int = 3, update: str = "") -> str:
    return (
        "name: web\ntype: service\n"
        f"instances: {instances}\n"
        f"command: 'echo {greeting}; exec sleep 1000'\n"
        "health_check: {type: tcp}\n"
        f"update: {{max_parallel: 1, min_healthy_time: 1s, healthy_deadline: 30s{update}}}\n"
    )


def run_of(core: JobsCore) -> ServiceRun:
    run = core.jobs["web"].service_run()
    assert run is not None
    return run


def healthy_all(core: JobsCore, placement: Placement, clock: Clock) -> None:
    """Every live launch reported running and healthy, then min_healthy_time passed."""
    run = run_of(core)
    for slot in run.slots():
        if slot.state in ("queued", "staging") and slot.task_id in placement.launch_of:
            report(core, placement, slot.task_id, tpb.TASK_RUNNING, healthy=True)
    clock.t += 2
    core.tick()


def test_versions_are_kept_and_a_changed_spec_rolls_out_through_the_run(tmp_path: Path) -> None:
    clock = Clock()
    db = tmp_path / "jobs.db"
    core, placement = start(db, clock)
    job, run, updated = core.submit(web("one"), "web.yaml", "framework/a", None)
    assert job is not None and isinstance(run, ServiceRun) and not updated
    assert [launch.version for launch in placement.submitted] == [1, 1, 1]
    healthy_all(core, placement, clock)
    assert run.deployment() is not None and run.deployment().state == "succeeded"  # type: ignore[union-attr]

    # the same spec again: nothing to roll out, no version
    core.submit(web("one"), "web.yaml", "framework/a", None)
    assert core.jobs["web"].version == 1

    # a changed spec: version 2, rolled out by the same run, one instance at a time
    core.submit(web("two"), "web.yaml", "framework/a", None)
    assert core.jobs["web"].version == 2 and run_of(core) is run
    assert len(placement.killed) == 1  # max_parallel 1: one old instance stopped

    # a crash mid-update: the versions and the run come back from the file
    core2, _ = start(db, clock)
    assert [v.version for v in core2.jobs["web"].versions] == [1, 2]
    again = run_of(core2)
    assert again.version == 2 and again.deployment() is not None
    assert again.deployment().state == "running"  # type: ignore[union-attr]


def test_scale_promote_and_revert_say_why_they_cannot_apply(tmp_path: Path) -> None:
    clock = Clock()
    core, placement = start(tmp_path / "jobs.db", clock)
    core.submit("name: b\ncommand: 'true'\n", "b.yaml", "framework/a", None)
    with pytest.raises(JobError, match="batch job"):
        core.scale("b", 3)
    core.submit(web("one"), "web.yaml", "framework/a", None)
    healthy_all(core, placement, clock)
    with pytest.raises(JobError, match="no canary") as e:
        core.promote("web")
    assert e.value.kind == "conflict"
    with pytest.raises(JobError, match="no version 7") as e:
        core.revert("web", 7, "framework/a")
    assert e.value.kind == "not_found"
    with pytest.raises(JobError, match="already"):
        core.revert("web", 1, "framework/a")
    with pytest.raises(JobError, match="no job"):
        core.scale("nosuch", 1)

    before, after = core.scale("web", 5)
    assert (before, after) == (3, 5)
    assert len([launch for launch in placement.submitted if launch.job_id == "web"]) == 5
    core.stop("web", "stopped")
    with pytest.raises(JobError, match="stopped"):
        core.scale("web", 2)


def test_a_failed_update_with_auto_revert_becomes_a_new_version_of_the_old_spec(tmp_path: Path) -> None:
    clock = Clock()
    core, placement = start(tmp_path / "jobs.db", clock)
    core.submit(web("one", update=", auto_revert: true"), "web.yaml", "framework/a", None)
    healthy_all(core, placement, clock)
    core.submit(web("broken", update=", auto_revert: true"), "web.yaml", "framework/a", None)
    # the old instance stopped, the new one runs but never gets healthy; its deadline passes
    (old,) = placement.killed
    report(core, placement, old, tpb.TASK_KILLED)
    run = run_of(core)
    new = next(s for s in run.slots() if s.version == 2)
    report(core, placement, new.task_id, tpb.TASK_RUNNING, healthy=False)
    clock.t += 31
    core.tick()
    job = core.jobs["web"]
    assert [(v.version, v.cause, v.reverted_from) for v in job.versions] == [
        (1, "submit", 0),
        (2, "submit", 0),
        (3, "auto-revert", 1),
    ]
    assert job.versions[2].spec_yaml == job.versions[0].spec_yaml
    assert run_of(core).version == 3


def test_after_a_scale_the_unchanged_file_sets_the_count_back_and_a_stopping_service_is_not_run_again(
    tmp_path: Path,
) -> None:
    clock = Clock()
    core, placement = start(tmp_path / "jobs.db", clock)
    core.submit(web("one", instances=2), "web.yaml", "framework/a", None)
    healthy_all(core, placement, clock)
    core.scale("web", 4)
    assert run_of(core).wanted_count() == 4
    core.submit(web("one", instances=2), "web.yaml", "framework/a", None)  # the file says 2: back to 2
    assert run_of(core).wanted_count() == 2 and core.jobs["web"].version == 2

    core.stop("web", "stopped")  # its kills are not answered yet: the run is stopping
    with pytest.raises(JobError, match="still stopping") as e:
        core.submit(web("two", instances=2), "web.yaml", "framework/a", None)
    assert e.value.kind == "conflict" and core.jobs["web"].version == 2  # nothing half-done


def test_a_revert_is_authorised_as_a_submit_of_that_spec(tmp_path: Path) -> None:
    clock = Clock()
    core, placement = start(tmp_path / "jobs.db", clock)
    core.submit(web("one"), "web.yaml", "framework/a", None)
    healthy_all(core, placement, clock)
    core.submit(web("two"), "web.yaml", "framework/a", None)
    seen = []

    def refuse(spec: object) -> None:
        seen.append(spec)
        raise JobError("framework/a may not run tasks as www", "denied")

    with pytest.raises(JobError, match="may not run") as e:
        core.revert("web", 1, "framework/a", authorize=refuse)
    assert e.value.kind == "denied" and len(seen) == 1 and core.jobs["web"].version == 2
