"""TaskRequest refuses bad amounts at once, naming the task and the field."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest

from scheduler_sdk.placement import Host, OfferSlice, PlacementEngine, TaskRequest


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cpus": -5}, "task t1: cpus must be a finite number >= 0, not -5"),
        ({"mem": math.nan}, "task t1: mem must be a finite number >= 0, not nan"),
        ({"disk": math.inf}, "task t1: disk must be a finite number >= 0, not inf"),
        ({"network": True}, "task t1: network must be a finite number >= 0, not True"),
        ({"cpus": "1"}, "task t1: cpus must be a finite number >= 0, not '1'"),
        ({"ports": -1}, "task t1: ports must be an int >= 0 (how many ports), not -1"),
        ({"ports": 1.5}, "task t1: ports must be an int >= 0 (how many ports), not 1.5"),
        ({"scalars": {"gpus": -1}}, "task t1: scalars['gpus'] must be a finite number >= 0, not -1"),
        ({"tier": "high"}, "task t1: tier must be an int, not 'high'"),
        ({"ready_at": math.nan}, "task t1: ready_at must be a number, not nan"),
    ],
)
def test_bad_task_requests_are_refused_naming_the_task_and_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TaskRequest("t1", **fields)  # type: ignore[arg-type]


def test_a_task_id_must_be_a_non_empty_string() -> None:
    with pytest.raises(ValueError, match=r"^task id must be a non-empty string, not ''$"):
        TaskRequest("")


def test_replace_checks_again() -> None:
    task = TaskRequest("t1", cpus=1)
    with pytest.raises(ValueError, match="task t1: cpus must be a finite number >= 0, not -1"):
        replace(task, cpus=-1)


def test_a_negative_task_can_no_longer_make_a_host_over_commit() -> None:
    # Before: a 1-cpu host took TaskRequest("neg", cpus=-5) and then a 5-cpu task. Now the first cannot be made,
    # and the 5-cpu task alone does not fit.
    with pytest.raises(ValueError):
        TaskRequest("neg", cpus=-5)
    host = Host("h1", offers=(OfferSlice("o1", cpus=1),))
    result = PlacementEngine().schedule([TaskRequest("big", cpus=5)], [host])
    assert result.assignments == ()
    assert [(f.name, f.detail) for f in result.failures["big"]] == [("cpus", "needs 5, has 1")]
