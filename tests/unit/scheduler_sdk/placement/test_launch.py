"""What a placement becomes on the wire, and what the scheduler reads from offers once: `task_resources_proto`
equals `task_resources(...).to_proto()` (its fast path, made once per task shape), and a `Lease`'s slices equal
what its offers hold read afresh."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aiomesos.v1 import scheduler_pb2 as spb
from scheduler_sdk.placement.agents import Lease, lease_room, offer_slice
from scheduler_sdk.placement.launch import default_task_info, task_resources, task_resources_proto
from scheduler_sdk.placement.model import Assignment, TaskRequest
from scheduler_sdk.resources import Resources

amounts = st.sampled_from([0.0, 0.001, 0.5, 1.0, 2.25, 4096.0])


@given(
    cpus=amounts,
    mem=amounts,
    disk=amounts,
    network=amounts,
    gpus=amounts,
    ports=st.lists(st.integers(1, 65535), max_size=5, unique=True),
)
def test_prop_the_resources_proto_of_a_shape_is_that_of_task_resources(
    cpus: float, mem: float, disk: float, network: float, gpus: float, ports: list[int]
) -> None:
    task = TaskRequest("t", cpus=cpus, mem=mem, disk=disk, network=network, scalars={"gpus": gpus})
    assert task_resources_proto(task, ports) == task_resources(task, ports).to_proto()
    assert task_resources_proto(task, ports) == task_resources_proto(task, ports)  # the same again, from the cache


def test_task_infos_of_one_shape_do_not_share_their_resources() -> None:
    a, b = TaskRequest("a", cpus=1, mem=64, payload="true"), TaskRequest("b", cpus=1, mem=64, payload="true")
    info_a = default_task_info(a, Assignment(a, "h1", "S1", ("O1",), (31000,)))
    info_b = default_task_info(b, Assignment(b, "h1", "S1", ("O1",)))
    info_a.resources[0].scalar.value = 99  # a caller may change what it was given
    assert Resources.from_proto(info_b.resources) == Resources.parse("cpus:1;mem:64")
    assert Resources.from_proto(default_task_info(b, Assignment(b, "h1", "S1", ())).resources) == Resources.parse(
        "cpus:1;mem:64"
    )
    assert Resources.from_proto(info_a.resources).ranges("ports") == ((31000, 31000),)


def offer(offer_id: str, resources: str) -> spb.Offer:
    return spb.Offer(id=offer_id, agent_id="S1", hostname="h1", resources=Resources.parse(resources).to_proto())


def test_a_lease_reads_each_offer_once_and_forgets_what_it_drops() -> None:
    lease = Lease("S1")
    lease.add(offer("O1", "cpus:2;mem:512;ports:[31000-31004]"), 10.0)
    lease.add(offer("O2", "cpus:0.5;gpus:1;disk:100"), 11.0)
    assert lease.slices == {
        "O1": offer_slice(lease.offers["O1"], 10.0),
        "O2": offer_slice(lease.offers["O2"], 11.0),
    }
    assert lease_room(lease) == {"cpus": 2.5, "mem": 512.0, "disk": 100.0, "gpus": 1.0, "ports": 5.0}
    assert lease.room() == lease_room(lease)
    lease.drop("O1")
    assert list(lease.offers) == list(lease.received) == list(lease.slices) == ["O2"]
    assert lease.room() == lease_room(lease) == {"cpus": 0.5, "disk": 100.0, "gpus": 1.0}  # summed again
    lease.add(offer("O3", "cpus:1"), 12.0)
    assert lease.room() == {"cpus": 1.5, "disk": 100.0, "gpus": 1.0}
