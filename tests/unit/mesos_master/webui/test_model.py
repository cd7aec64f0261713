"""The web UI's models and pages from a real `Master` core (the World of test_cluster): what each page lists,
who sees what, the task filters, a workflow's layers, and that every value from the cluster is escaped."""

from __future__ import annotations

import pytest

from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.allocator import Quota
from mesos_master.webui import pages
from mesos_master.webui.markup import resources_text
from mesos_master.webui.model import (
    TaskFilter,
    agent_rows,
    dag_layers,
    find_task,
    framework_rows,
    task_rows,
    totals,
)
from scheduler_sdk.resources import Resources
from tests.unit.mesos_master.test_cluster import World

#: A task id that would be markup if a page did not escape it (ids may not hold "/" or spaces).
EVIL = '<i>"x&amp;'


def cluster() -> tuple[World, str, str, str]:
    """Two agents, two frameworks (principals framework/a and framework/b), three tasks of a, one finished."""
    w = World()
    w.register("h1")
    w.register("h2")
    fa = w.subscribe("alpha", principal="framework/a", roles=["eng"])
    fb = w.subscribe("beta", principal="framework/b")
    w.drain()
    agent, _ = w.launch(fa, "web-1", "web-2", EVIL)
    w.agent_update(agent, fa, "web-1", tpb.TASK_RUNNING)
    w.agent_update(agent, fa, "web-2", tpb.TASK_FINISHED)
    w.drain()
    return w, fa, fb, agent


def test_totals_count_agents_tasks_and_roles() -> None:
    w, _, _, _ = cluster()
    w.master.set_quota("eng", Quota(Resources.parse("cpus:1"), Resources.parse("cpus:6")))
    t = totals(w.master, lambda owner: True)
    assert (t.agents, t.agents_active, t.frameworks) == (2, 2, 2)
    assert t.total.scalar("cpus") == 8
    assert t.tasks == {"TASK_FINISHED": 1, "TASK_RUNNING": 1, "TASK_STAGING": 1}
    eng = next(r for r in t.roles if r.role == "eng")
    assert eng.used.scalar("cpus") == 2  # two tasks still hold one cpu each
    assert eng.guarantee == Resources.parse("cpus:1") and eng.limit == Resources.parse("cpus:6")


def test_a_viewer_sees_only_the_frameworks_it_may() -> None:
    w, fa, fb, _ = cluster()
    only_b = lambda owner: owner == "framework/b"  # noqa: E731
    assert [f.framework_info.id for f in framework_rows(w.master, only_b)] == [fb]
    assert task_rows(w.master, only_b, TaskFilter()).rows == []
    assert totals(w.master, only_b).tasks == {}
    assert find_task(w.master, only_b, fa, "web-1") is None
    assert find_task(w.master, lambda owner: True, fa, "web-1") is not None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"web-1", "web-2", EVIL}),
        ({"state": "TASK_RUNNING"}, {"web-1"}),
        ({"state": "active"}, {"web-1", EVIL}),
        ({"state": "terminal"}, {"web-2"}),
        ({"name": "web"}, {"web-1", "web-2"}),
        ({"agent": "busy"}, {"web-1", "web-2", EVIL}),
        ({"agent": "idle"}, set()),
        ({"framework": "nope"}, set()),
    ],
)
def test_task_filters(query: dict[str, str], expected: set[str]) -> None:
    w, _, _, busy = cluster()
    hostnames = {"busy": w.master.agents[busy].info.hostname}
    hostnames["idle"] = next(a.info.hostname for a in w.master.agents.values() if a.id != busy)
    if "agent" in query:
        query = {"agent": hostnames[query["agent"]]}
    page = task_rows(w.master, lambda owner: True, TaskFilter.parse(query))
    assert {r.task_id for r in page.rows} == expected
    assert page.matched == len(expected)


def test_a_bad_state_filter_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"^state: 'RUNNING' is not a task state"):
        TaskFilter.parse({"state": "RUNNING"})


def test_active_tasks_come_first_and_the_limit_says_how_many_matched() -> None:
    w, _, _, _ = cluster()
    page = task_rows(w.master, lambda owner: True, TaskFilter(), limit=2)
    assert (len(page.rows), page.matched) == (2, 3)
    full = task_rows(w.master, lambda owner: True, TaskFilter())
    assert full.rows[-1].state == "TASK_FINISHED"


def test_pages_escape_what_the_cluster_says() -> None:
    w, _, _, _ = cluster()
    html = pages.tasks(task_rows(w.master, lambda owner: True, TaskFilter()), TaskFilter(name="<b>"))
    assert EVIL not in html
    assert '&lt;i&gt;"x&amp;amp;' in html
    assert 'value="&lt;b&gt;"' in html
    assert '<template id="task-row">' in html


def test_agent_rows_show_usage_and_state() -> None:
    w, _, _, a1 = cluster()
    w.master.disconnect_agent(a1)
    rows = {r.summary.agent_info.id: r for r in agent_rows(w.master)}
    assert rows[a1].state == "disconnected"
    assert rows[a1].allocated.scalar("cpus") >= 2
    html = pages.agents(list(rows.values()))
    assert f'data-agent="{a1}"' in html and "h2" in html


def test_resources_read_as_text() -> None:
    assert (
        resources_text(Resources.parse("cpus:0.5;mem:128;ports:[31000-31009]")) == "cpus 0.5 · mem 128 MiB · ports 10"
    )
    assert resources_text(Resources.empty()) == "—"


def test_dag_layers() -> None:
    steps = [("a", []), ("b", ["a"]), ("c", []), ("d", ["b", "c"]), ("e", ["zz"])]
    assert dag_layers(steps) == [["a", "c", "e"], ["b"], ["d"]]
    assert dag_layers([("x", ["y"]), ("y", ["x"])]) == [["x", "y"]]  # a cycle: one layer, nothing lost
    assert dag_layers([]) == []


def test_the_row_cap_keeps_the_active_tasks_then_the_latest_completed() -> None:
    """The cut comes after the sort: the latest completed task is kept before an older one."""
    w, fa, _, agent = cluster()
    w.clock.now += 5
    w.agent_update(agent, fa, "web-1", tpb.TASK_FINISHED)
    w.drain()
    page = task_rows(w.master, lambda owner: True, TaskFilter(), limit=2)
    assert page.matched == 3
    assert [r.task_id for r in page.rows] == [EVIL, "web-1"]


def test_only_the_configured_principals_jobs_services_are_dialled() -> None:
    """A framework's jobs API label is believed only from a principal of --jobs-principals (the master dials it
    with its own certificate), and a page dials at most MAX_JOBS_SERVICES of them."""
    from aiomesos.v1 import resources_pb2 as rpb
    from mesos_master.webui import jobs
    from mesos_master.webui.view import principal_list

    w, _, _, _ = cluster()

    def label(address: str) -> rpb.Labels:
        return rpb.Labels(labels=[rpb.Label(key="aiomesos.jobs.api", value=address)])

    w.subscribe("evil", principal="framework/b", labels=label("10.0.0.9:22"))
    for i in range(jobs.MAX_JOBS_SERVICES + 2):
        w.subscribe(f"jobs{i}", principal="framework/jobs", labels=label(f"127.0.0.1:{7000 + i}"))
    trusted = principal_list(" framework/jobs, operator/x ,")
    assert trusted == {"framework/jobs", "operator/x"}
    found = jobs.jobs_services(w.master, lambda owner: True, trusted.__contains__)
    assert len(found) == jobs.MAX_JOBS_SERVICES
    assert all(s.name.startswith("jobs") for s in found) and "10.0.0.9:22" not in {s.address for s in found}
