"""The documented example framework (docs/example_framework.py) runs to completion on a real local cluster, and
is as short as the docs say."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import tokenize
from pathlib import Path

import pytest

from scheduler_sdk.local_cluster import LocalCluster

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "example_framework.py"


async def test_example_framework_runs_all_tasks(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, agents=1) as cluster:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLE),
            "5",
            env={**os.environ, "AIOMESOS_MASTER": cluster.master_address},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = out.decode(errors="replace")
        assert proc.returncode == 0, text
        finished = [line for line in text.splitlines() if "TASK_FINISHED" in line]
        assert len(finished) == 5, text
        assert {line.split()[0] for line in finished} == {f"hello-{i}" for i in range(5)}, text

        # Each task's shell expanded its own $MESOS_TASK_ID into its sandbox's stdout.
        outputs = sorted(p.read_text().strip() for p in (tmp_path / "agent0").glob("**/executors/*/runs/latest/stdout"))
        assert outputs == [f"hello from hello-{i}" for i in range(5)]

        assert await cluster.stop() == []


def code_lines(source: str) -> int:
    """Lines with code on them: not blank, not only a comment, not the module's docstring."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type not in skip]
    if tokens and tokens[0].type == tokenize.STRING:
        tokens = tokens[1:]  # the docstring
    return len({line for t in tokens for line in range(t.start[0], t.end[0] + 1)})


def test_the_example_fits_in_30_lines() -> None:
    assert code_lines("x = 1\n\n# note\ny = (\n    2\n)\n") == 4
    assert code_lines('"""doc\nmore"""\nx = 1  # note\n') == 1
    assert code_lines(EXAMPLE.read_text()) <= 30
