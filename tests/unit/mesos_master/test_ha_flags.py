"""The master's etcd flags: which URLs it takes, when it speaks TLS to etcd, and one readable line otherwise."""

from __future__ import annotations

import pytest

from mesos_master.daemon import build_parser
from mesos_master.ha import open_coordination
from scheduler_sdk._daemon.process import DaemonError
from scheduler_sdk._daemon.security import DaemonSecurity
from scheduler_sdk.masters import MasterRecord

ME = MasterRecord(master_id="m1", address="127.0.0.1:5050")


def coordination(*flags: str):  # type: ignore[no-untyped-def]
    args = build_parser().parse_args(["--work-dir", "/nonexistent", *flags])
    return open_coordination(args, DaemonSecurity.from_args(args), ME)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--etcd", "zk://h:2181"], "want etcd://HOST:PORT"),
        (["--etcd", "http://127.0.0.1:2379"], "is plaintext: it needs --insecure"),
        (["--etcd", "etcd://127.0.0.1:2379"], "needs a CA"),
        (["--etcd", "etcd://127.0.0.1:2379", "--etcd-prefix", "/"], "want a path such as /aiomesos"),
        (["--etcd", "etcd://127.0.0.1:2379", "--etcd-ca", "/nonexistent/ca.pem"], "cannot read etcd TLS material"),
    ],
)
def test_bad_etcd_flags_are_one_line(flags: list[str], message: str) -> None:
    with pytest.raises(DaemonError, match=message):
        coordination(*flags)


def test_an_insecure_master_speaks_plaintext_to_an_etcd_url() -> None:
    c = coordination("--etcd", "etcd://127.0.0.1:2379,127.0.0.1:2380/cluster-a", "--insecure")
    assert c.client.tls is None and c.prefix == "/cluster-a" and c.endpoints == ["127.0.0.1:2379", "127.0.0.1:2380"]


def test_the_prefix_flag_wins_over_the_urls() -> None:
    c = coordination("--etcd", "http://127.0.0.1:2379/a", "--etcd-prefix", "b/", "--insecure")
    assert c.prefix == "/b"
