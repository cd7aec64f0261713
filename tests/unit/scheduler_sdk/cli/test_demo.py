"""`aiomesos demo` removes the temporary work dir it made once its cluster has stopped, however it ends (done,
failed, Ctrl-C), keeps a --work-dir the user gave, and keeps the dir of a cluster that did not start (its logs say
why) or did not stop cleanly."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest

from scheduler_sdk.cli import local
from scheduler_sdk.cli.main import build_parser
from scheduler_sdk.local_cluster import ClusterError


class FakeCluster:
    def __init__(self, work_dir: Path, start_error: BaseException | None, leftovers: list[str]) -> None:
        self.work_dir, self.start_error, self.leftovers = work_dir, start_error, leftovers
        self.stopped = False

    async def start(self) -> None:
        (self.work_dir / "logs").mkdir(parents=True)
        (self.work_dir / "logs" / "master.log").write_text("started\n")
        if self.start_error is not None:
            raise self.start_error

    async def stop(self) -> list[str]:
        self.stopped = True
        return self.leftovers


def demo(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    work_dir: str | None = None,
    start_error: BaseException | None = None,
    run: BaseException | int = 0,
    leftovers: list[str] | None = None,
) -> tuple[int | BaseException, list[FakeCluster]]:
    """Run cmd_demo with a fake cluster (temporary dirs under tmp_path): its exit code or what it raised."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("AIOMESOS_WORK_DIR", raising=False)
    clusters: list[FakeCluster] = []

    def make(args: argparse.Namespace, path: Path) -> FakeCluster:
        clusters.append(FakeCluster(path, start_error, leftovers or []))
        return clusters[-1]

    async def run_demo(cluster: Any, tasks: int, console: Any) -> int:
        if isinstance(run, BaseException):
            raise run
        return run

    monkeypatch.setattr(local, "_local_cluster", make)
    monkeypatch.setattr(local, "_run_demo", run_demo)
    args = local_args(work_dir)
    try:
        return asyncio.run(local.cmd_demo(args)), clusters
    except BaseException as e:
        return e, clusters


def local_args(work_dir: str | None) -> argparse.Namespace:
    args = build_parser().parse_args(["demo", "--tasks", "2"] + (["--work-dir", work_dir] if work_dir else []))
    assert isinstance(args, argparse.Namespace)
    return args


def temporary_dirs(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("aiomesos-demo-*"))


@pytest.mark.parametrize(
    ("start_error", "run", "expect"),
    [
        (None, 0, 0),  # done
        (None, 1, 1),  # some task failed
        (None, asyncio.CancelledError(), asyncio.CancelledError),  # Ctrl-C, SIGTERM
        (None, KeyboardInterrupt(), KeyboardInterrupt),
    ],
)
def test_the_temporary_work_dir_goes_however_the_demo_ends(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    start_error: BaseException | None,
    run: BaseException | int,
    expect: int | type[BaseException],
) -> None:
    result, [cluster] = demo(monkeypatch, tmp_path, start_error=start_error, run=run)
    assert result == expect if isinstance(expect, int) else isinstance(result, expect), result
    assert cluster.stopped and not cluster.work_dir.exists() and temporary_dirs(tmp_path) == []
    assert f"removed {cluster.work_dir}" in capsys.readouterr().out


def test_a_work_dir_the_user_gave_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    result, [cluster] = demo(monkeypatch, tmp_path, work_dir=str(mine))
    assert result == 0 and cluster.work_dir == mine and (mine / "logs" / "master.log").exists()


def test_the_dir_of_a_cluster_that_did_not_start_is_kept_for_its_logs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result, [cluster] = demo(monkeypatch, tmp_path, start_error=ClusterError("master exited at start"))
    assert isinstance(result, ClusterError) and cluster.stopped
    assert (cluster.work_dir / "logs" / "master.log").exists()
    assert f"work dir kept: {cluster.work_dir}" in capsys.readouterr().out


def test_the_dir_of_a_cluster_that_did_not_stop_cleanly_is_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result, [cluster] = demo(monkeypatch, tmp_path, leftovers=["cgroup aiomesos/x left behind"])
    assert result == 1 and (cluster.work_dir / "logs" / "master.log").exists()
    out = capsys.readouterr().out
    assert "did not stop cleanly" in out and f"work dir kept: {cluster.work_dir}" in out
