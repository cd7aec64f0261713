"""Masters on etcd: the flags, the etcd client a master uses (TLS with its own certificate unless the cluster is
--insecure), and what `GetMasters` answers (every master's record, the leader, etcd's health).

A master started with `--etcd` keeps its record under PREFIX/members while it runs, campaigns for PREFIX/leader
(mesos_master.election), and, while it leads, keeps the registry in etcd with every write fenced by its term
(mesos_master.registry.etcd). Without `--etcd` a master is the only one, with the SQLite registry in its work dir.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from aiomesos.v1 import operator_pb2 as opb
from mesos_master.election import Election
from scheduler_sdk._daemon.flags import FlagParser, duration
from scheduler_sdk._daemon.process import DaemonError
from scheduler_sdk._daemon.security import DaemonSecurity
from scheduler_sdk.etcd import EtcdClient, EtcdError, EtcdTLS, parse_url
from scheduler_sdk.masters import (
    DEFAULT_PREFIX,
    MasterRecord,
    leader_key,
    members_prefix,
    normalise_prefix,
)

#: The lease of the leader key when --etcd-lease is not given (ZooKeeper's session timeout in Mesos: 10 s).
DEFAULT_LEASE = 10.0


def add_etcd_flags(p: FlagParser) -> None:
    p.add_flag(
        "--etcd",
        default=None,
        help="run highly available: etcd endpoints as etcd://HOST:PORT[,HOST:PORT][/PREFIX] (TLS; plaintext only "
        "for an --insecure master without certificates), or https:// / http:// (plaintext, needs --insecure); "
        "masters elect a leader there and keep the registry there (default: a single master, SQLite in --work-dir)",
    )
    p.add_flag("--etcd-prefix", default=None, help=f"the cluster's key prefix in etcd (default {DEFAULT_PREFIX})")
    p.add_flag(
        "--etcd-lease",
        type=duration,
        default=DEFAULT_LEASE,
        help="the leader's lease (e.g. 2s, 10s): a leader that cannot refresh it for this long steps down, and a "
        "standby takes over once it expires",
    )
    p.add_flag("--etcd-ca", default=None, help="CA of etcd's server certificate (default: --ca)")
    p.add_flag("--etcd-cert", default=None, help="certificate this master shows etcd (default: --cert)")
    p.add_flag("--etcd-key", default=None, help="its key (default: --key)")


@dataclass
class Coordination:
    """A master's link to etcd: the client, the cluster's prefix and its election."""

    client: EtcdClient
    prefix: str
    election: Election
    endpoints: list[str]


def open_coordination(a: argparse.Namespace, security: DaemonSecurity, record: MasterRecord) -> Coordination:
    """The etcd client and election the flags ask for; raises DaemonError (one readable line) for bad ones."""
    from mesos_master.election import Election
    from scheduler_sdk.etcd import EtcdClient

    try:
        endpoints, use_tls, url_prefix = parse_url(a.etcd)
        if a.etcd.strip().lower().startswith("etcd://") and security.insecure and not security.secure:
            use_tls = False  # etcd:// follows the master's own security, as it does for clients
        prefix = normalise_prefix(a.etcd_prefix or url_prefix or DEFAULT_PREFIX)
    except ValueError as e:
        raise DaemonError(f"--etcd: {e}") from None
    if not use_tls and not security.insecure:
        raise DaemonError(f"--etcd {a.etcd} is plaintext: it needs --insecure (or an etcd:// or https:// URL)")
    tls = _etcd_tls(a, security) if use_tls else None
    client = EtcdClient(endpoints, tls=tls, timeout=min(2.0, max(0.5, a.etcd_lease / 3)))
    return Coordination(client, prefix, Election(client, prefix, record, a.etcd_lease), endpoints)


def _etcd_tls(a: argparse.Namespace, security: DaemonSecurity) -> EtcdTLS:
    own = security.tls
    ca = a.etcd_ca or (own.ca if own else None)
    cert = a.etcd_cert or (own.cert if own else None)
    key = a.etcd_key or (own.key if own else None)
    if ca is None:
        raise DaemonError("--etcd over TLS needs a CA: --etcd-ca or --ca")
    if (cert is None) != (key is None):
        raise DaemonError("--etcd-cert and --etcd-key go together")
    try:
        return EtcdTLS(
            ca=Path(ca).read_bytes(),
            cert=Path(cert).read_bytes() if cert else None,
            key=Path(key).read_bytes() if key else None,
        )
    except OSError as e:
        raise DaemonError(f"cannot read etcd TLS material {e.filename}: {e.strerror}") from None


def _summary(record: MasterRecord, leader: MasterRecord | None) -> opb.MasterSummary:
    leads = leader is not None and leader.master_id == record.master_id
    return opb.MasterSummary(
        master_id=record.master_id,
        address=record.address,
        hostname=record.hostname,
        leader=leads,
        started_at=record.started_at,
        elected_at=leader.elected_at if leads and leader is not None else 0.0,
    )


async def sole_master_view(me: MasterRecord) -> opb.GetMastersResponse:
    """A master without etcd: it alone, leading since it started, on SQLite."""
    leading = replace(me, elected_at=me.started_at)
    return opb.GetMastersResponse(masters=[_summary(leading, leading)], leader_id=me.master_id, registry="sqlite")


async def masters_view(
    coordination: Coordination, me: MasterRecord, leading: Callable[[], bool]
) -> opb.GetMastersResponse:
    """Every running master as etcd lists it, who leads, and etcd's health; what etcd cannot say is left out
    (its health says why), never an error: this is what an operator looks at when something is wrong. With etcd
    unreadable, only a master that holds a term now says who leads (itself): a leader seen earlier may be gone."""
    c = coordination
    response = opb.GetMastersResponse(registry="etcd", etcd_prefix=c.prefix)
    records: dict[str, MasterRecord] = {me.master_id: me}
    leader: MasterRecord | None = None
    try:
        for kv in await c.client.get_prefix(members_prefix(c.prefix)):
            try:
                record = MasterRecord.decode(kv.value)
            except ValueError:
                continue
            records[record.master_id] = record
        held = await c.client.get(leader_key(c.prefix))
        leader = MasterRecord.decode(held.value) if held is not None else None
    except (EtcdError, ValueError):
        leader = me if leading() else None
    response.masters.extend(_summary(r, leader) for r in sorted(records.values(), key=lambda r: r.master_id))
    if leader is not None:
        response.leader_id = leader.master_id
    for status in await c.client.status():
        response.etcd.append(
            opb.EtcdEndpointHealth(
                endpoint=status.endpoint,
                healthy=status.healthy,
                version=status.version,
                is_leader=status.is_leader,
                error=status.error,
                db_size=status.db_size,
            )
        )
    return response
