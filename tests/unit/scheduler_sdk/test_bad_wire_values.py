"""Unknown wire enum values are named, never raised on; amounts past any host's are refused, never overflowed."""

from __future__ import annotations

import pytest

from aiomesos.v1 import resources_pb2 as pb
from aiomesos.v1 import scheduler_pb2 as spb
from scheduler_sdk.enums import enum_name
from scheduler_sdk.resources import Resources, ResourcesError
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
