"""What the `aiomesos job ...` unit tests (test_cli_jobs*.py) share: builders of jobs_pb2 messages, a fake
JobsClient answering from a FakeService, and running the CLI's main."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest

from aiomesos.v1 import jobs_pb2 as jpb
from scheduler_sdk.cli import jobs_common
from scheduler_sdk.cli.main import main
from scheduler_sdk.frameworks.jobs.client import JobsError
from scheduler_sdk.security.config import CONFIG_ENV

NOW = time.mktime((2030, 6, 1, 12, 0, 0, 0, 0, -1))  # local noon


# ----------------------------------------------------------------------------------------- builders
def slot(step: str, index: int, state: str, **kw: Any) -> jpb.TaskSlot:
    return jpb.TaskSlot(step=step, index=index, state=state, task_id=kw.pop("task_id", f"x.r1.{step}.{index}.0"), **kw)


def run_status(state: str, tasks: list[jpb.TaskSlot], steps: list[jpb.StepStatus] | None = None) -> jpb.RunStatus:
    return jpb.RunStatus(run_id="r1", state=state, created_at=NOW - 10, tasks=tasks, steps=steps or [])


def job_status(run: jpb.RunStatus | None, job_type: str = "batch") -> jpb.JobStatus:
    job = jpb.JobSummary(job_id="x", type=job_type, role="ml", state=run.state if run else "scheduled", runs=1)
    return jpb.JobStatus(job=job, run=run) if run is not None else jpb.JobStatus(job=job)


def render(renderable: Any) -> str:
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=200).print(renderable)
    return out.getvalue()


# ----------------------------------------------------------------------------------------- the fake service
class FakeService:
    """What the fake JobsClient answers; `calls` records what it was asked."""

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.calls: list[tuple[str, Any]] = []
        self.status: jpb.JobStatus | JobsError = job_status(
            run_status("succeeded", [slot("x", i, "succeeded") for i in range(4)])
        )
        self.submitted = jpb.SubmitJobResponse(job_id="x", run_id="r1")
        self.error: JobsError | None = None
        self.history = jpb.JobHistoryResponse(
            runs=[jpb.RunSummary(run_id="r1", state="succeeded"), jpb.RunSummary(state="skipped")]
        )
        self.endpoints: list[jpb.Endpoint] = []
        self.statuses: list[jpb.JobStatus] = []  # when set: get_job answers these in turn (the last one stays)

    def client(self, address: str) -> Any:
        self.addresses.append(address)
        service = self

        class Client:
            async def __aenter__(self) -> Client:
                return self

            async def __aexit__(self, *exc: object) -> None:
                pass

            async def _answer(self, name: str, value: Any, arg: Any) -> Any:
                service.calls.append((name, arg))
                if service.error is not None:
                    raise service.error
                if isinstance(value, JobsError):
                    raise value
                return value

            async def submit(self, text: str, filename: str = "", *, dry_run: bool = False) -> Any:
                return await self._answer("submit", service.submitted, (text, filename, dry_run))

            async def get_job(self, job_id: str, run_id: str = "") -> Any:
                if service.statuses:
                    service.status = service.statuses.pop(0) if len(service.statuses) > 1 else service.statuses[0]
                return await self._answer("get_job", service.status, (job_id, run_id))

            async def list_jobs(self) -> Any:
                return await self._answer("list_jobs", [service.status.job], None)  # type: ignore[union-attr]

            async def stop_job(self, job_id: str) -> Any:
                return await self._answer("stop_job", jpb.StopJobResponse(run_id="r1", killed=3), job_id)

            async def job_history(self, job_id: str) -> Any:
                return await self._answer("job_history", service.history, job_id)

            async def scale_job(self, job_id: str, count: int, stage: str = "") -> Any:
                return await self._answer(
                    "scale_job", jpb.ScaleJobResponse(previous=3, count=count), (job_id, count, stage)
                )

            async def promote_job(self, job_id: str) -> Any:
                return await self._answer("promote_job", jpb.PromoteJobResponse(version=2), job_id)

            async def revert_job(self, job_id: str, version: int) -> Any:
                return await self._answer(
                    "revert_job", jpb.RevertJobResponse(version=4, reverted_from=version), (job_id, version)
                )

            async def get_endpoints(self, job_id: str, stage: str = "") -> Any:
                return await self._answer("get_endpoints", service.endpoints, (job_id, stage))

        return Client()


def fake_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeService:
    """A FakeService that the CLI's JobsClient is, with no client config or address from the environment."""
    for var in ("AIOMESOS_JOBS", "AIOMESOS_MASTER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(CONFIG_ENV, "")  # so that it is restored after the test, whatever main sets it to
    monkeypatch.delenv(CONFIG_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))  # no default client config
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("COLUMNS", "200")
    fake = FakeService()
    monkeypatch.setattr(jobs_common, "JobsClient", fake.client)
    return fake


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return int(e.value.code or 0), out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]
