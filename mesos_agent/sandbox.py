"""Sandbox layout, as Mesos': WORK_DIR/agents/<agent>/frameworks/<fw>/executors/<executor>/runs/<container>,
with a `latest` link to the newest run."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def sandbox_path(work_dir: Path, agent_id: str, framework_id: str, executor_id: str, container_id: str) -> Path:
    return (
        work_dir / "agents" / agent_id / "frameworks" / framework_id / "executors" / executor_id / "runs" / container_id
    )


def run_sandbox(
    work_dir: Path, agent_id: str, framework_id: str, task_id: str, container_id: str, known: Path | None
) -> Path:
    """A run's sandbox: the one it was launched in (`known`), else (a task re-adopted after an agent restart)
    where the layout puts it."""
    if known is not None:
        return known
    return sandbox_path(work_dir, agent_id, safe_id(framework_id), safe_id(task_id), container_id)


def create_sandbox(work_dir: Path, agent_id: str, framework_id: str, executor_id: str, container_id: str) -> Path:
    path = sandbox_path(work_dir, agent_id, framework_id, executor_id, container_id)
    make_run_dir(str(path), container_id)
    return path


def make_run_dir(sandbox: str, container_id: str) -> None:
    """Create a run directory and point the executor's `latest` link at it. System calls only (the agent calls
    this from a worker thread, once per launch): the common cases first, the fallbacks on their errors."""
    try:
        os.mkdir(sandbox)
    except FileNotFoundError:  # the executor's first run (the usual case)
        os.makedirs(sandbox, exist_ok=True)
    except FileExistsError:
        pass
    runs = os.path.dirname(sandbox)
    latest = f"{runs}/latest"
    try:
        os.symlink(container_id, latest)
    except FileExistsError:  # an earlier run of the executor: replace the link atomically
        tmp = f"{runs}/.latest.{container_id}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(container_id, tmp)
        os.replace(tmp, latest)


def safe_id(value: str) -> str:
    """A task or framework id made safe for one path component."""
    cleaned = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in value)
    return cleaned.lstrip(".") or "_"
