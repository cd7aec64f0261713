"""The master's Prometheus metrics, read from a core driven by hand: what the tasks, agents, frameworks, offers and
roles are now, in base units, with HELP and TYPE; the offers counted and each allocation cycle timed; a standby's
registry says only that it does not lead."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.metrics import master_registry
from scheduler_sdk._daemon.prometheus import metrics_response
from tests.unit.mesos_master.test_cluster import World

MiB = 1024 * 1024


def scrape(w: World | None) -> tuple[str, dict[str, dict[tuple[tuple[str, str], ...], float]]]:
    registry = master_registry(lambda: w.master if w is not None else None, lambda: 110.0, 100.0)
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return text, out


def test_a_leading_master_serves_its_state_in_base_units() -> None:
    w = World()
    aid = w.register()
    fid = w.subscribe(roles=["eng"])
    w.launch(fid, "t1", "t2", res="cpus:1;mem:128")
    w.agent_update(aid, fid, "t1", tpb.TASK_RUNNING)
    text, m = scrape(w)
    assert m["aiomesos_master_elected"][()] == 1
    assert m["aiomesos_master_uptime_seconds"][()] == 10.0
    assert m["aiomesos_master_tasks"][(("state", "TASK_RUNNING"),)] == 1
    assert m["aiomesos_master_tasks"][(("state", "TASK_STAGING"),)] == 1
    assert m["aiomesos_master_agents"][(("state", "connected"),)] == 1
    assert m["aiomesos_master_frameworks"][(("state", "connected"),)] == 1
    assert m["aiomesos_master_offers_total"][()] == 1
    assert m["aiomesos_master_cpus"][(("kind", "used"),)] == 2
    assert m["aiomesos_master_memory_bytes"][(("kind", "used"),)] == 256 * MiB
    assert m["aiomesos_master_role_used_cpus"][(("role", "eng"),)] == 2
    assert m["aiomesos_master_role_weight"][(("role", "eng"),)] == 1
    assert m["aiomesos_master_allocation_run_seconds_count"][()] == 1
    assert m["aiomesos_master_allocation_run_seconds_bucket"][(("le", "+Inf"),)] == 1
    for name, kind in (
        ("aiomesos_master_allocation_run_seconds", "histogram"),
        ("aiomesos_master_offers_total", "counter"),
        ("aiomesos_master_tasks", "gauge"),
    ):
        assert f"# TYPE {name} {kind}" in text and f"# HELP {name} " in text


def test_every_cycle_is_timed_and_only_offers_made_are_counted() -> None:
    w = World()
    w.register()
    fid = w.subscribe()
    w.offers()
    w.offers()  # nothing left to offer: timed, nothing counted
    _, m = scrape(w)
    assert m["aiomesos_master_allocation_run_seconds_count"][()] == 2
    assert m["aiomesos_master_offers_total"][()] == 1
    assert m["aiomesos_master_offers_outstanding"][()] == 1
    assert fid in w.master.frameworks


def test_a_standby_says_it_does_not_lead_and_nothing_of_a_core() -> None:
    _, m = scrape(None)
    assert m["aiomesos_master_elected"][()] == 0
    assert not any(name.startswith("aiomesos_master_tasks") for name in m)


def test_get_metrics_carries_the_same_samples_by_prometheus_name() -> None:
    w = World()
    w.register()
    response = metrics_response(master_registry(lambda: w.master, lambda: 0.0, 0.0))
    assert response.metrics['aiomesos_master_agents{state="connected"}'] == 1
    (family,) = [f for f in response.families if f.name == "aiomesos_master_agents"]
    assert family.type == "gauge" and family.help and {s.labels["state"] for s in family.samples} >= {"connected"}


def test_only_roles_with_something_to_show_get_series() -> None:
    """A role a framework merely names gets no series (any framework could name thousands); usage, a quota, a
    reservation or a weight other than 1 does."""
    w = World()
    w.register(resources="cpus:4;mem:1024;cpus(db):1")
    w.subscribe(roles=[f"r{i}" for i in range(50)])
    w.master.set_weights({"heavy": 2.0, "plain": 1.0})
    _, m = scrape(w)
    assert m["aiomesos_master_roles"][()] >= 50  # still counted
    labelled = {dict(k)["role"] for k in m["aiomesos_master_role_weight"]}
    assert labelled == {"db", "heavy"}
    assert {dict(k)["role"] for k in m["aiomesos_master_role_used_cpus"]} == {"db", "heavy"}
