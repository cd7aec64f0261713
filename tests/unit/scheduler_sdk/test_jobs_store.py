"""The jobs store: a real SQLite file; what is written is read back after a reopen, a transaction is all or
nothing, and the jobs daemon's env file lists every flag it has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scheduler_sdk.frameworks.jobs.daemon import build_parser
from scheduler_sdk.frameworks.jobs.store import JobRecord, JobStore, RunRecord, VersionRecord

ROOT = Path(__file__).resolve().parents[3]


def test_jobs_and_runs_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = JobStore(path)
    store.set_meta("framework_id", "fw-1")
    store.put_job(JobRecord("nightly", "name: nightly\n", "n.yaml", "operator/admin", 10.0, next_run_at=60.0))
    store.put_run(RunRecord("nightly", "1", 1, "running", "submit", 11.0, "name: nightly\n", data={"slots": [1]}))
    store.put_run(RunRecord("nightly", "2", 2, "skipped", "cron", 12.0, "name: nightly\n", 60.0, 12.0))
    store.close()

    again = JobStore(path)
    assert again.get_meta("framework_id") == "fw-1"
    (job,) = again.jobs()
    assert (job.job_id, job.owner, job.next_run_at, job.stopped) == ("nightly", "operator/admin", 60.0, False)
    runs = again.runs("nightly")
    assert [(r.run_id, r.state, r.data) for r in runs] == [("1", "running", {"slots": [1]}), ("2", "skipped", None)]
    assert [r.run_id for r in again.active_runs()] == ["1"]  # skipped times are not runs in progress
    again.close()


def test_a_transaction_is_all_or_nothing(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    with pytest.raises(RuntimeError), store.transaction():
        store.put_job(JobRecord("a", "name: a\n", "", "", 1.0))
        with store.transaction():  # nested: the outer one decides
            store.put_run(RunRecord("a", "1", 1, "pending", "submit", 1.0, "name: a\n", data={}))
        raise RuntimeError("crash before the commit")
    assert store.jobs() == [] and store.runs("a") == []
    with store.transaction():
        store.put_job(JobRecord("a", "name: a\n", "", "", 1.0))
    assert [j.job_id for j in store.jobs()] == ["a"]


def test_the_env_file_lists_every_flag_of_the_jobs_daemon() -> None:
    text = (ROOT / "deploy" / "env" / "jobs.env.example").read_text()
    listed = set(re.findall(r"^#?(AIOMESOS_[A-Z_]+)=", text, re.MULTILINE))
    flags = {
        "AIOMESOS_" + s[2:].upper().replace("-", "_")
        for action in build_parser()._actions
        for s in action.option_strings
        if s.startswith("--") and s not in ("--help", "--cron-clock-file")
    }
    assert flags - listed == set(), f"flags missing from deploy/env/jobs.env.example: {sorted(flags - listed)}"


def test_a_services_versions_survive_a_reopen_in_order(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = JobStore(path)
    with store.transaction():
        store.put_version(VersionRecord("web", 2, "name: web # two\n", "web.yaml", "operator/a", 20.0, "submit"))
        store.put_version(VersionRecord("web", 1, "name: web # one\n", "web.yaml", "operator/a", 10.0, "submit"))
        store.put_version(VersionRecord("web", 3, "name: web # one\n", "", "", 30.0, "auto-revert", reverted_from=1))
        store.put_version(VersionRecord("other", 1, "name: other\n", "o.yaml", "", 5.0, "submit"))
    store.close()
    again = JobStore(path)
    versions = again.versions("web")
    assert [(v.version, v.cause, v.reverted_from) for v in versions] == [
        (1, "submit", 0),
        (2, "submit", 0),
        (3, "auto-revert", 1),
    ]
    assert versions[1].spec_yaml == "name: web # two\n" and versions[0].owner == "operator/a"
    assert [v.version for v in again.versions("other")] == [1]
    assert again.versions("nosuch") == []
