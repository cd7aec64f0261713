"""Paging of the operator's lists (mesos_master.paging): a stable order, pages bounded in count and bytes, and a
continue token that survives changes between pages without skipping or repeating what still exists."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiomesos.v1 import operator_pb2 as opb
from aiomesos.v1 import resources_pb2 as rpb
from aiomesos.v1 import tasks_pb2 as tpb
from mesos_master.allocator import HierarchicalAllocator
from mesos_master.api.dispatch import Dispatcher
from mesos_master.api.operator import OperatorService, task_entries
from mesos_master.cluster import Master
from mesos_master.paging import (
    PAGE_BYTES,
    Cursor,
    Key,
    PageTokenError,
    decode_token,
    encode_token,
    take_page,
    unique_keys,
)
from mesos_master.records import Framework, Task
from scheduler_sdk._daemon.guard import Guard
from scheduler_sdk.resources import Resources
from scheduler_sdk.security.acls import Authorizer

Sections = list[dict[Key, int]]  # per section: key -> the item's size in bytes


def entries(sections: Sections) -> list[list[tuple[Key, Callable[[], tuple[Key, int]]]]]:
    return [[(k, lambda k=k, n=n: (k, n)) for k, n in section.items()] for section in sections]  # type: ignore[misc]


def page_of(
    sections: Sections, after: Cursor | None, limit: int = 0, max_bytes: int = 1 << 20
) -> tuple[list[Key], Cursor | None]:
    page = take_page(entries(sections), after, lambda item: item[1], limit=limit, max_bytes=max_bytes)
    return [key for key, _ in page.items], page.next


def test_a_page_is_in_section_then_key_order_and_bounded_in_count() -> None:
    sections: Sections = [{("b",): 1, ("a",): 1}, {("z",): 1, ("c",): 1}]
    assert page_of(sections, None, limit=3) == ([("a",), ("b",), ("c",)], Cursor(1, ("c",)))
    assert page_of(sections, Cursor(1, ("c",)), limit=3) == ([("z",)], None)


def test_the_last_page_has_no_token_even_when_it_is_exactly_full() -> None:
    assert page_of([{("a",): 1, ("b",): 1}], None, limit=2) == ([("a",), ("b",)], None)


def test_a_page_is_bounded_in_bytes_but_always_holds_one_item() -> None:
    sections: Sections = [{("a",): 40, ("b",): 40, ("c",): 500}]
    assert page_of(sections, None, max_bytes=100) == ([("a",), ("b",)], Cursor(0, ("b",)))
    # An item bigger than the page travels alone: every page moves on.
    assert page_of(sections, Cursor(0, ("b",)), max_bytes=100) == ([("c",)], None)


def test_an_item_is_built_only_when_it_is_looked_at() -> None:
    built: list[str] = []

    def build(name: str) -> Callable[[], str]:
        return lambda: built.append(name) or name  # type: ignore[func-returns-value]

    sections = [[((n,), build(n)) for n in "abcdef"]]
    page = take_page(sections, None, lambda _: 1, limit=2)
    assert page.items == ["a", "b"] and built == ["a", "b"]


def test_the_cursor_need_not_exist_any_more() -> None:
    # The last item of the previous page was removed meanwhile: the next page starts after where it was.
    assert page_of([{("a",): 1, ("c",): 1}], Cursor(0, ("b",))) == ([("c",)], None)


def test_a_token_comes_back_as_its_cursor() -> None:
    cursor = Cursor(2, ("framework-1", "task/ä", "~"))
    assert decode_token("GetState", encode_token("GetState", cursor), 3) == cursor
    assert decode_token("GetState", "", 3) is None


def raw_token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "not base64 !",
        raw_token("not json"),
        raw_token('{"a": 1}'),
        raw_token('[2, "GetState", 0, []]'),  # another version
        raw_token('[1, "GetState", 0, [1]]'),  # a key part that is not a string
        raw_token('[1, "GetState", true, []]'),
        raw_token('[1, "GetState", 3, []]'),  # no such section
        raw_token('[1, "GetState", -1, []]'),
        raw_token("[" * 3000 + "]" * 3000),
        base64.urlsafe_b64encode(b"\xff\xfe[").decode(),  # not UTF-8
        "A" * 70000,
    ],
)
def test_a_token_not_given_out_is_refused(token: str) -> None:
    with pytest.raises(PageTokenError, match="continue_token"):
        decode_token("GetState", token, 3)


def test_a_token_of_another_request_is_refused() -> None:
    token = encode_token("GetTasks/abc", Cursor(0, ("x",)))
    with pytest.raises(PageTokenError, match="another request"):
        decode_token("GetTasks/def", token, 1)


def test_equal_keys_are_told_apart_in_order_of_appearance() -> None:
    keyed = [(("a",), 1), (("b",), 2), (("a",), 3)]
    assert unique_keys(keyed) == [(("a", "000000"), 1), (("a", "000001"), 3), (("b",), 2)]


keys = st.tuples(st.sampled_from("abcdefghij"), st.sampled_from("xyz"))


@settings(max_examples=200, deadline=None)
@given(
    initial=st.lists(st.sets(keys, max_size=12), min_size=1, max_size=3),
    changes=st.lists(st.tuples(st.booleans(), st.integers(0, 2), keys), max_size=30),
    limit=st.integers(1, 4),
)
def test_paging_through_a_changing_list_gives_what_stays_exactly_once(
    initial: list[set[Key]], changes: list[tuple[bool, int, Key]], limit: int
) -> None:
    sections: list[set[Key]] = [set(s) for s in initial]
    stayed = [set(s) for s in sections]
    seen: list[tuple[int, Key]] = []
    after: Cursor | None = None
    pending = list(changes)
    for _ in range(1000):
        page = take_page(
            [[(k, lambda s=i, k=k: (s, k)) for k in section] for i, section in enumerate(sections)],  # type: ignore[misc]
            after,
            lambda _: 1,
            limit=limit,
        )
        seen.extend(page.items)
        if page.next is None:
            break
        after = page.next
        # Between pages, add or remove a few items.
        for add, section, key in pending[:3]:
            if section >= len(sections):
                continue
            if add:
                sections[section].add(key)
            else:
                sections[section].discard(key)
                stayed[section].discard(key)
        del pending[:3]
    assert len(seen) == len(set(seen)), "an item was listed twice"
    assert seen == sorted(seen), "the order is not stable"
    for section, kept in enumerate(stayed):
        assert kept <= {k for s, k in seen if s == section}, "an item that stayed was skipped"


def a_task(task_id: str, state: int = tpb.TASK_RUNNING, at: float = 1.0) -> Task:
    task = Task("fw", "agent", tpb.TaskInfo(task_id=task_id), Resources.empty(), state=state)
    task.statuses.append(tpb.TaskStatus(task_id=task_id, state=state, timestamp=at))  # type: ignore[arg-type]
    return task


def listed(frameworks: Sequence[Framework], after: Cursor | None, limit: int) -> tuple[list[str], Cursor | None]:
    page = take_page([task_entries(frameworks, ())], after, lambda _: 1, limit=limit)
    return [f"{path[-1]}:{summary.task.task_id}" for path, summary in page.items], page.next  # type: ignore[attr-defined]


def test_a_task_that_completes_between_pages_is_listed_once() -> None:
    fw = Framework(info=rpb.FrameworkInfo(id="fw"), connected=True, registered_time=0.0)
    fw.completed_tasks.append(a_task("t", tpb.TASK_FINISHED, at=1.0))  # an earlier task with the same id
    fw.completed_tasks.append(a_task("t", tpb.TASK_FINISHED, at=1.0))  # and another, ended at the same time
    fw.tasks["t"] = a_task("t")
    fw.tasks["u"] = a_task("u")
    first, after = listed([fw], None, limit=3)
    assert first == ["completed_tasks:t", "completed_tasks:t", "tasks:t"]
    # t completes after the first page: it is not listed again, u still is.
    fw.completed_tasks.append(fw.tasks.pop("t"))
    fw.completed_tasks[-1].statuses.append(tpb.TaskStatus(task_id="t", state=tpb.TASK_FINISHED, timestamp=2.0))
    assert listed([fw], after, limit=3) == (["tasks:u"], None)


class Aborted(Exception):
    pass


class Context:
    """Just enough of a grpc.aio.ServicerContext: abort() raises."""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


async def test_the_masters_pages_stay_under_a_default_clients_limit_however_big_the_items() -> None:
    master = Master("M", HierarchicalAllocator(allocation_interval=1.0), clock=lambda: 1000.0)
    for i in range(12):  # 4.8 MB of frameworks: more than a default client takes in one message
        info = rpb.FrameworkInfo(id=f"fw-{i:02d}", name="n" * 400_000)
        master.frameworks[info.id] = Framework(info=info, connected=True, registered_time=0.0)
    service = OperatorService(Dispatcher(master, registry=None), Guard(Authorizer(), secure=False))  # type: ignore[arg-type]
    request = opb.GetStateRequest()
    listed: list[str] = []
    for _ in range(20):
        page = await service.GetState(request, Context())  # type: ignore[arg-type]
        assert page.ByteSize() <= PAGE_BYTES + 1024
        assert page.master_id == "M"
        listed += [f.framework_info.id for f in page.frameworks.frameworks]
        if not page.continue_token:
            break
        request.continue_token = page.continue_token
    assert listed == [f"fw-{i:02d}" for i in range(12)]

    with pytest.raises(Aborted) as refused:
        await service.GetFrameworks(opb.GetFrameworksRequest(continue_token=request.continue_token), Context())  # type: ignore[arg-type]
    assert refused.value.args[0] == grpc.StatusCode.INVALID_ARGUMENT
