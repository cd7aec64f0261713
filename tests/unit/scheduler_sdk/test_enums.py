"""Unknown wire enum values are named, never raised on, where a message about them is written."""

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
