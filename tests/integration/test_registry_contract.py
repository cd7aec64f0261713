"""The registry's contract, run against both real registries: SQLite (a real file, reopened) and etcd (a real etcd,
fenced by a real term). Every operation of `registry/operations.py` must round-trip through apply + load the same.
Then what only etcd has: the fence (a deposed leader writes nothing) and transactions chunked to etcd's limits."""

from __future__ import annotations

import random
import time
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiomesos.v1 import resources_pb2 as rpb
from mesos_master.election import Election
from mesos_master.registry import (
    AdmitAgent,
    FencedError,
    MarkAgentUnreachable,
    Operation,
    PutFramework,
    Registry,
    RegistryError,
    RegistryState,
    RemoveAgent,
    RemoveFramework,
    RemoveQuota,
    SQLiteRegistry,
    UpdateQuota,
    UpdateReservations,
    UpdateWeight,
)
from mesos_master.registry.etcd import MAX_TXN_OPS, EtcdRegistry
from mesos_master.registry.operations import MarkAgentGone, RemoveDrain, UpdateDrain
from scheduler_sdk.etcd import EtcdClient
from scheduler_sdk.masters import MasterRecord, registry_prefix
from scheduler_sdk.resources import Resources


def agent(agent_id: str, cpus: int = 2) -> rpb.AgentInfo:
    return rpb.AgentInfo(id=agent_id, hostname=f"host-{agent_id}", resources=Resources.parse(f"cpus:{cpus}").to_proto())


def framework(framework_id: str, name: str = "fw") -> rpb.FrameworkInfo:
    return rpb.FrameworkInfo(id=framework_id, name=name, roles=["eng/prod"])


def resources(text: str) -> tuple[rpb.Resource, ...]:
    return tuple(Resources.parse(text).to_proto())


A1, A1_BIGGER, A2 = agent("S1"), agent("S1", 8), agent("S2")
F1, F1_RENAMED = framework("F1"), framework("F1", "renamed")

# name: (batches of operations, the state loaded afterwards)
SCENARIOS: dict[str, tuple[list[list[Operation]], RegistryState]] = {
    "admit, then admit again with new info": (
        [[AdmitAgent(A1), AdmitAgent(A2)], [AdmitAgent(A1_BIGGER)]],
        RegistryState(agents={"S1": A1_BIGGER, "S2": A2}),
    ),
    "unreachable, and admitted again": (
        [
            [AdmitAgent(A1), AdmitAgent(A2)],
            [MarkAgentUnreachable("S1", 123.25), MarkAgentUnreachable("S2", 1.5)],
            [AdmitAgent(A2)],
        ],
        RegistryState(agents={"S1": A1, "S2": A2}, unreachable={"S1": 123.25}),
    ),
    "an agent removed, unreachable with it": (
        [[AdmitAgent(A1), MarkAgentUnreachable("S1", 1.0)], [RemoveAgent("S1"), RemoveAgent("never-there")]],
        RegistryState(),
    ),
    "a framework put and updated": (
        [[PutFramework(F1)], [PutFramework(F1_RENAMED)]],
        RegistryState(frameworks={"F1": F1_RENAMED}),
    ),
    "a framework removed for good": (
        [[PutFramework(F1), PutFramework(framework("F2"))], [RemoveFramework("F1")], [PutFramework(F1_RENAMED)]],
        RegistryState(frameworks={"F2": framework("F2")}, removed_frameworks={"F1"}),
    ),
    "an unknown framework removed: no change": ([[RemoveFramework("F9")]], RegistryState()),
    "put and removed in one batch": (
        [[PutFramework(F1), RemoveFramework("F1"), RemoveFramework("F1"), RemoveFramework("F3")]],
        RegistryState(removed_frameworks={"F1"}),
    ),
    "weights, roles with slashes": (
        [[UpdateWeight("eng", 2.0), UpdateWeight("eng/prod", 0.5)], [UpdateWeight("eng", 3.25)]],
        RegistryState(weights={"eng": 3.25, "eng/prod": 0.5}),
    ),
    "quotas with and without a limit, one removed": (
        [
            [
                UpdateQuota("eng", resources("cpus:1"), None),
                UpdateQuota("eng/a", resources("cpus:1"), resources("cpus:4")),
            ],
            [UpdateQuota("ml", resources("mem:64"), ()), RemoveQuota("eng"), RemoveQuota("none")],
        ],
        RegistryState(
            quotas={
                "eng/a": (list(resources("cpus:1")), list(resources("cpus:4"))),
                "ml": (list(resources("mem:64")), []),
            }
        ),
    ),
    "reservations set, replaced and cleared": (
        [
            [UpdateReservations("S1", resources("cpus(eng):1")), UpdateReservations("S2", resources("cpus(ml):2"))],
            [UpdateReservations("S1", resources("cpus(eng):2;mem(eng):10")), UpdateReservations("S2", ())],
        ],
        RegistryState(reservations={"S1": list(resources("cpus(eng):2;mem(eng):10"))}),
    ),
    "one batch writing one key many times: the last write wins": (
        [[AdmitAgent(A1), MarkAgentUnreachable("S1", 2.0), AdmitAgent(A1_BIGGER), RemoveAgent("S1"), AdmitAgent(A1)]],
        RegistryState(agents={"S1": A1}),
    ),
    "drains: set, replaced, ended, and an agent marked gone": (
        [
            [AdmitAgent(A1), AdmitAgent(A2), UpdateDrain("S1", "DRAINING", 1500.0, True, 1000.0)],
            [UpdateDrain("S2", "DRAINING", None, False, 1000.0)],
            [UpdateDrain("S2", "DRAINED", None, False, 1000.0, 1200.0), RemoveDrain("S1")],
            [UpdateDrain("S1", "DRAINED", None, True, 1000.0, 1100.0), MarkAgentGone("S1", 1100.0)],
        ],
        RegistryState(
            agents={"S2": A2},
            drains={"S2": UpdateDrain("S2", "DRAINED", None, False, 1000.0, 1200.0)},
            gone={"S1": 1100.0},
        ),
    ),
    "a removed agent's drain goes with it": (
        [[AdmitAgent(A1), UpdateDrain("S1", "DRAINING", None, False, 5.0)], [RemoveAgent("S1")]],
        RegistryState(),
    ),
    "ids with odd characters": (
        [[AdmitAgent(agent("a/b%2Fc")), UpdateWeight("x%y/z", 1.5)]],
        RegistryState(agents={"a/b%2Fc": agent("a/b%2Fc")}, weights={"x%y/z": 1.5}),
    ),
}


def test_the_scenarios_cover_every_operation() -> None:
    used = {type(op) for batches, _ in SCENARIOS.values() for batch in batches for op in batch}
    assert used == set(typing.get_args(Operation)), "a registry operation without a contract scenario"


@dataclass
class Store:
    """A registry to write to, and a fresh one on the same store to load from."""

    registry: Registry
    reopen: Callable[[], Awaitable[Registry]]

    async def reload(self) -> RegistryState:
        fresh = await self.reopen()
        try:
            return await fresh.load()
        finally:
            await fresh.close()


@pytest.fixture(params=["sqlite", "etcd"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, etcd_client: EtcdClient, etcd_prefix: str
) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        path = tmp_path / "registry.sqlite"
        registry: Registry = SQLiteRegistry(path)

        async def reopen_sqlite() -> Registry:
            return SQLiteRegistry(path)

        yield Store(registry, reopen_sqlite)
        await registry.close()
        return
    election = Election(etcd_client, etcd_prefix, MasterRecord("m1", "127.0.0.1:5050"), ttl=5.0)
    term = await election.campaign()

    async def reopen_etcd() -> Registry:
        return EtcdRegistry(etcd_client, etcd_prefix, None)

    yield Store(EtcdRegistry(etcd_client, etcd_prefix, term.fence()), reopen_etcd)
    await election.resign(term)
    await etcd_client.delete(etcd_prefix, prefix=True)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_every_operation_round_trips(store: Store, scenario: str) -> None:
    batches, expected = SCENARIOS[scenario]
    for batch in batches:
        await store.registry.apply(batch)
    assert await store.reload() == expected
    assert await store.registry.load() == expected


def random_operations(rng: random.Random, count: int) -> list[Operation]:
    ids = ["S1", "S2", "S/3", "F1", "F2"]
    roles = ["eng", "eng/prod", "ml"]
    make: list[Callable[[], Operation]] = [
        lambda: AdmitAgent(agent(rng.choice(ids), rng.randint(1, 9))),
        lambda: RemoveAgent(rng.choice(ids)),
        lambda: MarkAgentUnreachable(rng.choice(ids), rng.random() * 1e9),
        lambda: PutFramework(framework(rng.choice(ids), rng.choice(["a", "b"]))),
        lambda: RemoveFramework(rng.choice(ids)),
        lambda: UpdateWeight(rng.choice(roles), rng.random() * 10),
        lambda: UpdateQuota(
            rng.choice(roles), resources(f"cpus:{rng.randint(1, 4)}"), rng.choice([None, resources("cpus:8")])
        ),
        lambda: RemoveQuota(rng.choice(roles)),
        lambda: UpdateReservations(rng.choice(ids), rng.choice([(), resources("cpus(eng):1")])),
        lambda: UpdateDrain(rng.choice(ids), "DRAINING", rng.choice([None, 9.5]), rng.random() < 0.5, 1.0),
        lambda: RemoveDrain(rng.choice(ids)),
        lambda: MarkAgentGone(rng.choice(ids), rng.random() * 1e9),
    ]
    return [rng.choice(make)() for _ in range(count)]


async def test_random_batches_load_the_same_from_sqlite_and_etcd(
    tmp_path: Path, etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    rng = random.Random(10)
    sqlite = SQLiteRegistry(tmp_path / "r.sqlite")
    etcd = EtcdRegistry(etcd_client, etcd_prefix, None)
    operations = random_operations(rng, 1500)
    while operations:
        size = rng.choice([1, 3, 40, 2 * MAX_TXN_OPS + 5])  # some batches need several transactions
        batch, operations = operations[:size], operations[size:]
        await sqlite.apply(batch)
        await etcd.apply(batch)
        assert await etcd.load() == await sqlite.load()
    await sqlite.close()


async def test_a_deposed_leader_writes_nothing(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    a = Election(etcd_client, etcd_prefix, MasterRecord("a", "127.0.0.1:5050"), ttl=5.0)
    b = Election(etcd_client, etcd_prefix, MasterRecord("b", "127.0.0.1:5051"), ttl=5.0)
    term_a = await a.campaign()
    registry_a = EtcdRegistry(etcd_client, etcd_prefix, term_a.fence())
    await registry_a.apply([AdmitAgent(A1), UpdateWeight("eng", 2.0)])
    before = await etcd_client.get_prefix(registry_prefix(etcd_prefix))

    await etcd_client.revoke_lease(term_a.lease_id)  # a's lease is gone; b takes the leader key
    term_b = await b.campaign()
    big_batch = [UpdateWeight(f"r{i}", float(i)) for i in range(3 * MAX_TXN_OPS)]
    for batch in ([AdmitAgent(A2), RemoveAgent("S1"), UpdateWeight("eng", 9.0)], big_batch):
        with pytest.raises(FencedError, match=r"no longer leads.*nothing was written"):
            await registry_a.apply(batch)
    assert await etcd_client.get_prefix(registry_prefix(etcd_prefix)) == before

    registry_b = EtcdRegistry(etcd_client, etcd_prefix, term_b.fence())
    await registry_b.apply([AdmitAgent(A2)])
    assert set((await registry_b.load()).agents) == {"S1", "S2"}
    await b.resign(term_b)
    await etcd_client.delete(etcd_prefix, prefix=True)


async def test_big_batches_are_split_to_etcds_limits(etcd_client: EtcdClient, etcd_prefix: str) -> None:
    registry = EtcdRegistry(etcd_client, etcd_prefix, None)
    padded = [PutFramework(rpb.FrameworkInfo(id=f"F{i}", name="x" * 300_000)) for i in range(8)]  # ~2.4 MB
    many = [UpdateWeight(f"role/{i}", 1.0 + i) for i in range(1000)]
    await registry.apply([*padded, *many])
    state = await registry.load()
    assert len(state.frameworks) == 8 and len(state.weights) == 1000 and state.weights["role/999"] == 1000.0

    with pytest.raises(RegistryError, match="PutFramework is too big for one transaction"):
        await registry.apply([PutFramework(rpb.FrameworkInfo(id="huge", name="x" * (2 << 20)))])
    assert "huge" not in (await registry.load()).frameworks
    await etcd_client.delete(etcd_prefix, prefix=True)


async def test_an_unreachable_etcd_is_a_registry_error(
    etcd_server: object, etcd_prefix: str, dead_port: Callable[[], int]
) -> None:
    async with EtcdClient([f"127.0.0.1:{dead_port()}"], timeout=0.5) as client:
        registry = EtcdRegistry(client, etcd_prefix, None)
        started = time.monotonic()
        with pytest.raises(RegistryError, match="cannot write: etcd: txn: no endpoint answered"):
            await registry.apply([UpdateWeight("eng", 1.0)])
        with pytest.raises(RegistryError, match="cannot load"):
            await registry.load()
        assert time.monotonic() - started < 5.0
