"""The `Resources` value type: text form, algebra, protobuf round trip, and properties over random values."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aiomesos.v1 import resources_pb2 as pb
from scheduler_sdk.resources import UNRESERVED, Resources, ResourcesError

P = Resources.parse


# ------------------------------------------------------------------------------------------- parsing
def test_parse_full_example_and_views() -> None:
    r = P("cpus:4;mem:2048;ports:[31000-32000];cpus(eng):2;zones:{a,b}")
    assert r.scalar("cpus") == 6
    assert r.scalar("cpus", UNRESERVED) == 4
    assert r.scalar("cpus", "eng") == 2
    assert r.scalar("mem") == 2048
    assert r.scalars() == {"cpus": 6.0, "mem": 2048.0}
    assert r.ranges() == ((31000, 32000),)
    assert r.range_count() == 1001
    assert r.set_items("zones") == frozenset({"a", "b"})
    assert r.names() == {"cpus", "mem", "ports", "zones"}
    assert r.roles() == {UNRESERVED, "eng"}


def test_str_is_canonical_and_round_trips() -> None:
    text = "cpus:4;mem:2048;ports:[31000-32000];cpus(eng):2;zones:{b,a}"
    r = P(text)
    assert str(r) == "cpus:4;cpus(eng):2;mem:2048;ports:[31000-32000];zones:{a,b}"
    assert P(str(r)) == r
    assert repr(r) == f"Resources({str(r)!r})"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cpus:0.5", "cpus:0.5"),
        ("cpus:0.125", "cpus:0.125"),
        ("cpus:1.10", "cpus:1.1"),
        ("mem:32.0", "mem:32"),
        ("cpus:1;cpus:2", "cpus:3"),  # repeated parts add up
        ("  cpus : 2 ; ; mem:1  ", "cpus:2;mem:1"),
        ("cpus:0", ""),  # zero amounts vanish
        ("ports:[]", ""),
        ("zones:{}", ""),
        ("", ""),
        ("cpus(*):1", "cpus:1"),
        ("cpus(eng/prod):1", "cpus(eng/prod):1"),
        ("ports:[7]", "ports:[7-7]"),
    ],
)
def test_parse_then_print(text: str, expected: str) -> None:
    assert str(P(text)) == expected


def test_parse_default_role() -> None:
    r = P("cpus:1;mem(ml):2", default_role="eng")
    assert r.scalar("cpus", "eng") == 1
    assert r.scalar("mem", "ml") == 2
    assert r.roles() == {"eng", "ml"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ports:[1-3,4-6]", ((1, 6),)),  # adjacent ranges merge
        ("ports:[10-20,15-30]", ((10, 30),)),  # overlapping ranges merge
        ("ports:[30-40,1-2]", ((1, 2), (30, 40))),  # sorted
        ("ports:[1-2];ports:[3-3]", ((1, 3),)),  # across parts
        ("ports:[1-2, 5-6 ,9]", ((1, 2), (5, 6), (9, 9))),
    ],
)
def test_ranges_normalize(text: str, expected: tuple[tuple[int, int], ...]) -> None:
    assert P(text).ranges() == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("cpus:abc", "'abc'"),
        ("cpus:-1", "'-1'"),
        ("ports:[5-1]", "5-1"),
        ("foo", "'foo'"),
        ("cpus:inf", "'inf'"),
        ("cpus:nan", "'nan'"),
        ("cpus:1e400", "'1e400'"),
        ("ports:[1-2", "[1-2"),
        ("ports:[a-b]", "'a-b'"),
        ("zones:{a,b", "{a,b"),
        ("cpus(eng:1", "cpus(eng:1"),
        ("cpus:1;mem:lots", "'lots'"),
    ],
)
def test_malformed_text_raises_naming_the_bad_part(text: str, fragment: str) -> None:
    with pytest.raises(ResourcesError) as info:
        P(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_malformed_errors_name_the_resource() -> None:
    with pytest.raises(ResourcesError, match="cpus"):
        P("mem:1;cpus:abc")
    with pytest.raises(ResourcesError, match="ports"):
        P("ports:[5-1]")


def test_of_and_ports_constructors() -> None:
    assert Resources.of(cpus=1, mem=128) == P("cpus:1;mem:128")
    assert Resources.of(role="eng", cpus=2) == P("cpus(eng):2")
    assert Resources.ports((5, 6), (1, 2)) == P("ports:[1-2,5-6]")
    with pytest.raises(ResourcesError, match="cpus"):
        Resources.of(cpus=-1)
    with pytest.raises(ResourcesError):
        Resources.ports((5, 1))
    assert Resources.empty() == P("")
    assert not Resources.empty()


# ------------------------------------------------------------------------------------------- algebra
def test_add_and_subtract_scalars_ranges_sets() -> None:
    a = P("cpus:2;mem:1024;ports:[1000-1999];zones:{a}")
    b = P("cpus:0.5;mem:24;ports:[2000-2099];zones:{b}")
    total = a + b
    assert total == P("cpus:2.5;mem:1048;ports:[1000-2099];zones:{a,b}")
    assert total - b == a
    assert total - a == b


def test_subtract_splits_ranges() -> None:
    r = P("ports:[1-10]") - P("ports:[4-5]")
    assert r.ranges() == ((1, 3), (6, 10))
    assert (P("ports:[1-10]") - P("ports:[1-1,10-10]")).ranges() == ((2, 9),)
    assert P("ports:[1-10]") - P("ports:[1-10]") == Resources.empty()


def test_roles_are_kept_apart() -> None:
    r = P("cpus:4;cpus(eng):2")
    assert not r.contains(P("cpus(eng):3"))
    assert r.contains(P("cpus(eng):2;cpus:4"))
    assert not r.contains(P("cpus(ml):1"))
    with pytest.raises(ResourcesError, match="not contained"):
        r - P("cpus(eng):3")
    assert r - P("cpus:4") == P("cpus(eng):2")


def test_subtract_not_contained_raises() -> None:
    for small, big in [
        ("cpus:1", "cpus:2"),
        ("ports:[1-5]", "ports:[5-6]"),
        ("zones:{a}", "zones:{a,b}"),
        ("cpus:1", "mem:1"),
    ]:
        with pytest.raises(ResourcesError):
            P(small) - P(big)


def test_subtract_clamped_never_negative_and_ignores_missing() -> None:
    r = P("cpus:1;mem:100;ports:[1-5];zones:{a}")
    out = r.subtract_clamped(P("cpus:3;disk:10;ports:[4-9];zones:{a,z};mem(eng):50"))
    assert out == P("mem:100;ports:[1-3]")


def test_contains_and_comparisons() -> None:
    big = P("cpus:4;mem:2048;ports:[31000-32000];zones:{a,b}")
    small = P("cpus:1;ports:[31005-31010];zones:{b}")
    assert big.contains(small) and big >= small and small <= big
    assert not small.contains(big)
    # a range must fit inside one held interval (held intervals are disjoint and merged)
    assert not P("ports:[1-5,7-9]").contains(P("ports:[5-7]"))
    assert big.contains(Resources.empty())


def test_hash_and_equality() -> None:
    a = P("cpus:1;ports:[1-3];zones:{x}")
    b = P("zones:{x};ports:[1-2,3-3];cpus:1.000")
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != P("cpus:1")
    assert a != "cpus:1"


def test_fixed_point_sums_do_not_drift() -> None:
    tenth = Resources.of(cpus=0.1)
    total = Resources.empty()
    for _ in range(10):
        total = total + tenth
    assert total == Resources.of(cpus=1)
    assert total.scalar("cpus") == 1.0
    assert str(total) == "cpus:1"
    for _ in range(10):
        total = total - tenth
    assert total == Resources.empty()
    assert P("cpus:0.1") + P("cpus:0.2") == P("cpus:0.3")


def test_take_ports() -> None:
    r = P("ports:[100-101,200-210];cpus:1")
    assert r.take_ports(3) == P("ports:[100-101,200-200]")
    assert r.take_ports(0) == Resources.empty()
    assert r.take_ports(13) == P("ports:[100-101,200-210]")
    with pytest.raises(ResourcesError, match="only 13 ports available, 14 needed"):
        r.take_ports(14)
    with pytest.raises(ResourcesError):
        P("cpus:1").take_ports(1)
    assert P("ports(eng):[5-9]").take_ports(2) == P("ports(eng):[5-6]")


def test_allocatable_to_includes_ancestors_reservations() -> None:
    r = P("cpus:4;cpus(eng):2;cpus(eng/prod):1;cpus(ml):3;cpus(engineering):5")
    assert r.allocatable_to("eng/prod") == P("cpus:4;cpus(eng):2;cpus(eng/prod):1")
    assert r.allocatable_to("eng") == P("cpus:4;cpus(eng):2")
    assert r.allocatable_to("*") == P("cpus:4")
    assert r.reserved() == P("cpus(eng):2;cpus(eng/prod):1;cpus(ml):3;cpus(engineering):5")
    assert r.reserved("ml") == P("cpus(ml):3")
    assert r.unreserved() == P("cpus:4")


def test_flatten_and_with_role() -> None:
    r = P("cpus:4;cpus(eng):2;ports:[1-2];ports(eng):[3-4];zones(eng):{a};zones:{b}")
    assert Resources.flatten(r) == P("cpus:6;ports:[1-4];zones:{a,b}")
    assert r.with_role("ml") == P("cpus(ml):6;ports(ml):[1-4];zones(ml):{a,b}")


def test_only_and_filter() -> None:
    r = P("cpus:4;mem:10;ports:[1-2]")
    assert r.only("cpus", "ports") == P("cpus:4;ports:[1-2]")
    assert r.filter(lambda n, _r: n == "mem") == P("mem:10")


def test_dominant_share() -> None:
    total = P("cpus:9;mem:18432")
    assert P("cpus:1;mem:4096").dominant_share(total) == pytest.approx(4096 / 18432)
    assert P("cpus:3;mem:1024").dominant_share(total) == pytest.approx(1 / 3)
    assert P("gpus:1").dominant_share(total) == 0.0  # names missing from the total are ignored
    assert Resources.empty().dominant_share(total) == 0.0


# ------------------------------------------------------------------------------------------- protobuf
def test_to_proto_shape() -> None:
    msgs = P("cpus(eng):1.5;ports:[1-2,4-4];zones:{b,a}").to_proto()
    by_name = {m.name: m for m in msgs}
    assert by_name["cpus"].type == pb.Value.SCALAR
    assert by_name["cpus"].scalar.value == 1.5
    assert by_name["cpus"].role == "eng"
    assert [(x.begin, x.end) for x in by_name["ports"].ranges.range] == [(1, 2), (4, 4)]
    assert by_name["ports"].role == UNRESERVED
    assert list(by_name["zones"].set.item) == ["a", "b"]
    assert list(iter(P("cpus:1"))) == P("cpus:1").to_proto()


def test_from_proto_defaults_and_errors() -> None:
    scalar = pb.Resource(name="cpus", type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=2))
    assert Resources.from_proto([scalar, scalar]) == P("cpus:4")  # empty role means unreserved; adds up
    with pytest.raises(ResourcesError, match="without a name"):
        Resources.from_proto([pb.Resource(type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=1))])
    with pytest.raises(ResourcesError, match="cpus"):
        Resources.from_proto([pb.Resource(name="cpus", type=pb.Value.SCALAR, scalar=pb.Value.Scalar(value=-1))])
    with pytest.raises(ResourcesError, match="TEXT"):
        Resources.from_proto([pb.Resource(name="x", type=pb.Value.TEXT)])
    bad_range = pb.Resource(
        name="ports", type=pb.Value.RANGES, ranges=pb.Value.Ranges(range=[pb.Value.Range(begin=5, end=1)])
    )
    with pytest.raises(ResourcesError, match="ports"):
        Resources.from_proto([bad_range])


# ------------------------------------------------------------------------------------------- properties
ROLES = [UNRESERVED, "eng", "eng/prod", "ml"]
SCALAR_NAMES = ["cpus", "mem", "disk", "gpus"]

milli_amounts = st.integers(min_value=1, max_value=10_000_000).map(lambda m: m / 1000)


@st.composite
def resources(draw: st.DrawFn, port_lo: int = 1000, port_hi: int = 9999, items: str = "abcde") -> Resources:
    r = Resources.empty()
    for name in draw(st.lists(st.sampled_from(SCALAR_NAMES), max_size=4, unique=True)):
        r = r + Resources.of(role=draw(st.sampled_from(ROLES)), **{name: draw(milli_amounts)})
    for _ in range(draw(st.integers(0, 3))):
        begin = draw(st.integers(port_lo, port_hi))
        end = draw(st.integers(begin, min(port_hi, begin + 500)))
        r = r + Resources.ports((begin, end), role=draw(st.sampled_from(ROLES)))
    if draw(st.booleans()):
        chosen = draw(st.frozensets(st.sampled_from(items), min_size=1))
        role = draw(st.sampled_from(ROLES))
        r = r + P("zones({}):{{{}}}".format(role, ",".join(sorted(chosen))))
    return r


any_resources = resources()
low_resources = resources(port_lo=1000, port_hi=4999, items="abcde")
high_resources = resources(port_lo=5000, port_hi=9999, items="vwxyz")


@given(low_resources, high_resources)
def test_prop_add_then_subtract_is_identity(a: Resources, b: Resources) -> None:
    # ranges and sets are sets, so this holds when a and b hold no common port or item
    assert (a + b) - b == a
    assert (a + b) - a == b


@given(any_resources, any_resources)
def test_prop_add_is_commutative_and_contains_parts(a: Resources, b: Resources) -> None:
    assert a + b == b + a
    assert (a + b).contains(a)
    assert (a + b).contains(b)


@given(any_resources)
def test_prop_contains_self(a: Resources) -> None:
    assert a.contains(a)
    assert a - a == Resources.empty()


@given(any_resources, any_resources)
def test_prop_subtract_then_add_back(a: Resources, b: Resources) -> None:
    whole = a + b  # contains b
    assert (whole - b) + b == whole
    assert whole.subtract_clamped(b) == whole - b


@given(any_resources)
def test_prop_text_round_trip(r: Resources) -> None:
    assert P(str(r)) == r


@given(any_resources)
def test_prop_proto_round_trip(r: Resources) -> None:
    assert Resources.from_proto(r.to_proto()) == r
    wire = [pb.Resource.FromString(m.SerializeToString()) for m in r.to_proto()]
    assert Resources.from_proto(wire) == r


@given(any_resources, any_resources)
def test_prop_subtracting_what_is_not_contained_raises(a: Resources, b: Resources) -> None:
    assume(not a.contains(b))
    with pytest.raises(ResourcesError):
        a - b
    assert a.contains(a.subtract_clamped(b))


@settings(max_examples=50)
@given(st.integers(1, 50), st.sampled_from([0.1, 0.001, 0.3, 0.7]))
def test_prop_fixed_point_repeated_sums(n: int, step: float) -> None:
    total = Resources.empty()
    for _ in range(n):
        total = total + Resources.of(cpus=step)
    assert total == Resources.of(cpus=round(n * step, 3))
    assert total.scalar("cpus") == round(n * step, 3)


@pytest.mark.parametrize(
    ("have", "unit", "limit", "expected"),
    [
        ("cpus:2;mem:256", "cpus:0.1;mem:32", None, 8),  # mem bounds it
        ("cpus:2;mem:256", "cpus:0.1;mem:32", 3, 3),
        ("cpus:0.05;mem:256", "cpus:0.1", None, 0),
        ("cpus(eng):2", "cpus:1", None, 0),  # roles are apart, as in contains
        ("cpus:2;ports:[31000-31002]", "cpus:0.5;ports:[31000-31000]", None, 1),  # that port once
        ("cpus:4;zones:{a,b}", "cpus:1;zones:{a}", None, 1),
    ],
)
def test_fit_count_is_how_many_side_by_side(have: str, unit: str, limit: int | None, expected: int) -> None:
    assert Resources.parse(have).fit_count(Resources.parse(unit), limit) == expected


def test_fit_count_of_nothing_is_refused() -> None:
    with pytest.raises(ResourcesError, match="empty"):
        Resources.of(cpus=1).fit_count(Resources.empty())


@given(any_resources, st.dictionaries(st.sampled_from(SCALAR_NAMES), milli_amounts, max_size=4))
def test_prop_subtracting_scalars_only_is_the_general_subtraction(a: Resources, amounts: dict[str, float]) -> None:
    taken = Resources.from_scalars(amounts)
    general = taken + Resources.ports((1, 1))  # port 1 is in no `a`: the same subtraction, by the general path
    assert a.subtract_clamped(taken) == a.subtract_clamped(general)
    assert (a + taken).subtract_clamped(taken) == a


def test_the_kept_sums_and_roles_are_those_computed_and_do_not_change_equality() -> None:
    r = Resources.parse("cpus:2;cpus(eng):1;mem:512;ports:[1-3]")
    fresh = Resources.parse("cpus:2;cpus(eng):1;mem:512;ports:[1-3]")
    assert r.scalar_sums() == r.scalars() == {"cpus": 3.0, "mem": 512.0}
    assert r.scalar_sums() is r.scalar_sums()  # kept, not rebuilt
    assert r.role_set() == frozenset(r.roles()) == {"*", "eng"}
    assert r == fresh and hash(r) == hash(fresh)  # what was kept is no part of equality or the hash
    assert Resources.empty().scalar_sums() == {} and Resources.empty().role_set() == frozenset()
