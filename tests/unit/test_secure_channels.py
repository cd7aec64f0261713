"""Every client channel the code opens goes through `scheduler_sdk.channels.open_channel`, which is TLS whenever
the client has a CA: a plaintext channel written anywhere else would skip the security of the cluster."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("scheduler_sdk", "mesos_master", "mesos_agent", "bench")
# The etcd client opens its own channels (etcd is no master): plaintext only for an http:// URL (EtcdClient.from_url).
ALLOWED = {Path("scheduler_sdk/channels.py"), Path("scheduler_sdk/etcd/client.py")}


def plaintext_channels(root: Path) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if relative in ALLOWED:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Attribute) and node.attr == "insecure_channel":
                    found.append(f"{relative}:{node.lineno}")
    return found


def test_no_plaintext_channel_outside_open_channel() -> None:
    assert plaintext_channels(ROOT) == []


def test_the_check_finds_one(tmp_path: Path) -> None:
    (tmp_path / "mesos_agent").mkdir()
    (tmp_path / "mesos_agent" / "link.py").write_text("import grpc\nchannel = grpc.aio.insecure_channel('x')\n")
    assert plaintext_channels(tmp_path) == ["mesos_agent/link.py:2"]
