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


def create_sandbox(work_dir: Path, agent_id: str, framework_id: str, executor_id: str, container_id: str) -> Path:
    path = sandbox_path(work_dir, agent_id, framework_id, executor_id, container_id)
    path.mkdir(parents=True, exist_ok=True)
    latest = path.parent / "latest"
    tmp = path.parent / f".latest.{container_id}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(container_id, tmp)
    os.replace(tmp, latest)
    return path


def safe_id(value: str) -> str:
    """A task or framework id made safe for one path component."""
    cleaned = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in value)
    return cleaned.lstrip(".") or "_"
