"""Safe defaults (issue 9): a daemon without TLS listens on loopback only and says so; listening elsewhere needs
`--insecure`, which warns; asking for another address without either is refused at start (exit 2, one line)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from scheduler_sdk.local_cluster import Daemon, leftover_cgroups
from tests.e2e.harness import eventually
from tests.e2e.test_security import log_events

pytestmark = [pytest.mark.e2e]


def daemon_argv(kind: str, work_dir: Path, *flags: str) -> list[str]:
    common = ["--work-dir", str(work_dir), "--port", "0", "--log-format", "json", *flags]
    if kind == "master":
        return [sys.executable, "-m", "mesos_master", *common]
    agent = ["--master", "127.0.0.1:1", "--gpus", "none", "--resources", "cpus:1;mem:256;disk:256"]
    return [sys.executable, "-m", "mesos_agent", *agent, *common]


def plain_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AIOMESOS_")} | {"PYTHONUNBUFFERED": "1"}


def listening_ips(pid: int) -> set[str]:
    """The addresses the process listens on (an IPv4-mapped IPv6 address as its IPv4 one)."""
    found = set()
    for c in psutil.Process(pid).net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN:
            ip = ipaddress.ip_address(c.laddr.ip)
            mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
            found.add(str(mapped or ip))
    return found


@pytest.mark.parametrize("kind", ["master", pytest.param("agent", marks=pytest.mark.cgroups)])
async def test_without_tls_a_daemon_listens_on_loopback_unless_insecure(kind: str, tmp_path: Path) -> None:
    address_file = f"{kind}.addr"

    async def refuses_everywhere() -> None:
        proc = await asyncio.create_subprocess_exec(
            *daemon_argv(kind, tmp_path / "everywhere", "--ip", "0.0.0.0"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=plain_env(),
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        lines = (out + err).decode().strip().splitlines()
        assert proc.returncode == 2, lines
        assert len(lines) == 1 and lines[0].startswith(f"aiomesos {kind}: error: --ip 0.0.0.0 without TLS"), lines
        assert "--insecure" in lines[0]

    daemons = {
        name: Daemon(name, daemon_argv(kind, tmp_path / name, *flags), tmp_path / name, tmp_path / f"{name}.log")
        for name, flags in (("loopback", ()), ("insecure", ("--insecure", "--ip", "0.0.0.0")))
    }
    for d in daemons.values():
        d.start(plain_env())
    try:
        await refuses_everywhere()
        for name, d in daemons.items():
            await eventually(
                lambda d=d: (d.work_dir / address_file).exists() or not d.alive, timeout=30, what=f"{name} up"
            )
            assert d.alive, d.log_tail()
            assert (d.work_dir / address_file).read_text().startswith("127.0.0.1:")
        loopback, insecure = daemons["loopback"], daemons["insecure"]
        assert loopback.process is not None and insecure.process is not None
        assert listening_ips(loopback.process.pid) == {"127.0.0.1"}
        assert listening_ips(insecure.process.pid) & {"0.0.0.0", "::"}, listening_ips(insecure.process.pid)

        def warned(d: Daemon, words: str) -> bool:
            return any(e.get("level") == "warning" and words in e.get("event", "") for e in log_events(d.log_path))

        await eventually(
            lambda: warned(loopback, f"{kind} security: off (no --cert)"), timeout=10, what="the loopback note"
        )
        assert warned(loopback, "listening on loopback only")
        await eventually(lambda: warned(insecure, f"{kind} security: OFF (--insecure)"), timeout=10, what="the warning")
    finally:
        codes = await asyncio.gather(
            *(d.stop(sig=signal.SIGTERM if kind == "master" else signal.SIGUSR1) for d in daemons.values())
        )
    assert codes == [0, 0], [d.log_tail() for d in daemons.values()]
    for d in daemons.values():
        assert leftover_cgroups(d.work_dir) == []
