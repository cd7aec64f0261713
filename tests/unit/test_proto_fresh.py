"""The committed generated code under aiomesos/v1/ and aiomesos/etcd/v3/ must match what protoc makes from proto/
today."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# As the Makefile's PROTOS: our wire types, and the subset of etcd's v3 API that scheduler_sdk.etcd speaks.
PROTO_DIRS = (ROOT / "proto" / "aiomesos" / "v1", ROOT / "proto" / "aiomesos" / "etcd" / "v3")
PROTOS = sorted(p for d in PROTO_DIRS for p in d.glob("*.proto"))
STALE = "generated code is stale: run `make proto`"


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    for d in PROTO_DIRS:
        assert any(p.parent == d for p in PROTOS), f"no .proto files found under {d.relative_to(ROOT)}"
    venv_python = ROOT / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    bindir = Path(python).parent  # protoc-gen-mypy and protoc-gen-mypy_grpc live next to it
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    out = str(tmp_path)
    proc = subprocess.run(
        [
            python,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_out={out}",
            f"--mypy_grpc_out={out}",
            *(str(p.relative_to(ROOT)) for p in PROTOS),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        pytest.fail(f"protoc failed ({proc.returncode}):\n{proc.stderr}")

    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "protoc generated nothing"
    stale = []
    for rel in generated:
        committed = ROOT / rel
        if not committed.is_file():
            stale.append(f"{rel} (missing)")
        elif committed.read_bytes() != (tmp_path / rel).read_bytes():
            stale.append(f"{rel} (differs)")
    assert not stale, f"{STALE}\n" + "\n".join(stale)
