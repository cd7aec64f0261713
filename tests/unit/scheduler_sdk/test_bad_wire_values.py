"""Unknown wire enum values are named, never raised on; amounts past any host's are refused, never overflowed."""

from __future__ import annotations

import pytest

from aiomesos.v1 import resources_pb2 as pb
from aiomesos.v1 import scheduler_pb2 as spb
from scheduler_sdk.enums import enum_name
from scheduler_sdk.resources import MAX_RANGES, MAX_SET_ITEMS, Resources, ResourcesError
from scheduler_sdk.states import state_name


def test_enum_name_names_known_values_and_marks_unknown_ones() -> None:
    assert enum_name(spb.Call.Type, spb.Call.ACCEPT) == "ACCEPT"
    assert enum_name(spb.Call.Type, 999) == "unknown (999)"
    assert state_name(12345) == "unknown (12345)"


def test_a_resource_of_an_unknown_type_is_a_resources_error_that_says_so() -> None:
    resource = pb.Resource(name="cpus", type=77)  # type: ignore[arg-type]
    with pytest.raises(ResourcesError, match=r"resource 'cpus' has unsupported type unknown \(77\)"):
        Resources.from_proto([resource])


@pytest.mark.parametrize("amount", [1e308, 1e30, 1e12 + 1, -1.0, float("nan"), float("inf")])
def test_a_huge_or_bad_amount_is_a_resources_error_not_an_overflow(amount: float) -> None:
    resource = pb.Resource(name="mem", type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=amount))
    with pytest.raises(ResourcesError, match=r"invalid amount .* for 'mem': must be a number from 0 to 1e\+12"):
        Resources.from_proto([resource])
    with pytest.raises(ResourcesError, match=r"must be a number from 0 to 1e\+12"):
        Resources.parse(f"mem:{amount}")


def test_the_largest_amount_is_kept_exactly() -> None:
    resource = pb.Resource(name="mem", type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=1e12))
    assert Resources.from_proto([resource]).scalars() == {"mem": 1e12}


def ranges_resource(name: str, *ranges: tuple[int, int]) -> pb.Resource:
    listed = [pb.Value.Range(begin=b, end=e) for b, e in ranges]
    return pb.Resource(name=name, type=pb.Value.RANGES, ranges=pb.Value.Ranges(range=listed))


@pytest.mark.parametrize(
    ("ranges", "why"),
    [
        ([(31000, 2**64 - 1)], r"range \[31000-18446744073709551615\] for 'ports' goes past 65535"),
        ([(65535, 65536)], r"range \[65535-65536\] for 'ports' goes past 65535"),
        ([(5, 4)], r"range \[5-4\] for 'ports' ends before it begins"),
    ],
)
def test_a_port_range_past_65535_or_backwards_is_a_resources_error(ranges: list[tuple[int, int]], why: str) -> None:
    with pytest.raises(ResourcesError, match=why):
        Resources.from_proto([ranges_resource("ports", *ranges)])
    text = ",".join(f"{b}-{e}" for b, e in ranges)
    with pytest.raises(ResourcesError, match=why.replace(r"\[", r"\[?").replace(r"\]", r"\]?")):
        Resources.parse(f"ports:[{text}]")


def test_the_last_port_is_a_port_and_other_ranges_are_bounded_as_scalars() -> None:
    assert Resources.from_proto([ranges_resource("ports", (0, 65535))]).range_count() == 65536
    Resources.from_proto([ranges_resource("ids", (0, 10**12))])
    with pytest.raises(ResourcesError, match=r"for 'ids' goes past 1000000000000"):
        Resources.from_proto([ranges_resource("ids", (0, 2**64 - 1))])
    with pytest.raises(ResourcesError, match="malformed range"):
        Resources.parse("ports:[1-" + "9" * 5000 + "]")  # not a 5000-digit int, never past Python's int limit


def test_ranges_and_set_items_of_one_resource_are_counted() -> None:
    singles = [(2 * i, 2 * i) for i in range(MAX_RANGES)]
    assert len(Resources.from_proto([ranges_resource("ports", *singles)]).ranges()) == MAX_RANGES
    with pytest.raises(ResourcesError, match=f"resource 'ports' lists {MAX_RANGES + 1} ranges, at most {MAX_RANGES}"):
        Resources.from_proto([ranges_resource("ports", *singles, (5000, 5000))])
    with pytest.raises(ResourcesError, match=f"lists {MAX_RANGES + 1} ranges"):
        Resources.parse("ports:[" + ",".join(f"{b}-{e}" for b, e in [*singles, (5000, 5000)]) + "]")
    items = [f"z{i}" for i in range(MAX_SET_ITEMS + 1)]
    Resources.from_proto([pb.Resource(name="zones", type=pb.Value.SET, set=pb.Value.Set(item=items[:-1]))])
    with pytest.raises(ResourcesError, match=f"lists {MAX_SET_ITEMS + 1} set items, at most {MAX_SET_ITEMS}"):
        Resources.from_proto([pb.Resource(name="zones", type=pb.Value.SET, set=pb.Value.Set(item=items))])
    with pytest.raises(ResourcesError, match=f"lists {MAX_SET_ITEMS + 1} set items"):
        Resources.parse("zones:{" + ",".join(items) + "}")


def test_a_resource_error_quotes_a_long_name_short() -> None:
    resource = pb.Resource(name="n" * 10_000, type=77)  # type: ignore[arg-type]
    with pytest.raises(ResourcesError) as refused:
        Resources.from_proto([resource])
    assert "…(10000 characters)" in str(refused.value) and len(str(refused.value)) < 200
