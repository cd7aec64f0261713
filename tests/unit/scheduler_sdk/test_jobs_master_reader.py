"""The master's web UI reads the jobs service: the service lets `master/*` principals call it (to read) and
never submit, and says where its API is in its FrameworkInfo."""

from __future__ import annotations

from typing import NoReturn

import grpc
import pytest

from aiomesos.v1 import jobs_pb2 as jpb
from aiomesos.v1 import resources_pb2 as rpb
from scheduler_sdk._daemon.security import _caller
from scheduler_sdk.frameworks.jobs.client import API_LABEL, api_address
from scheduler_sdk.frameworks.jobs.service import CALLERS, JobsServicer
from scheduler_sdk.security.certs import Principal


class Aborted(Exception):
    pass


class Context:
    async def abort(self, code: grpc.StatusCode, message: str) -> NoReturn:
        raise Aborted(code, message)


async def test_a_master_may_call_the_service_but_not_submit() -> None:
    assert "master" in CALLERS["aiomesos.v1.Jobs"]
    servicer = JobsServicer(core=None, agents=None, secure=True)  # type: ignore[arg-type]
    token = _caller.set(Principal("master", "master"))
    try:
        with pytest.raises(Aborted) as refused:
            await servicer.Submit(jpb.SubmitJobRequest(spec_yaml="name: x\ncommand: true\n"), Context())  # type: ignore[arg-type]
    finally:
        _caller.reset(token)
    code, message = refused.value.args
    assert code == grpc.StatusCode.PERMISSION_DENIED and message == "master/master may read jobs, not submit them"


def test_the_api_address_is_a_label_of_the_framework() -> None:
    info = rpb.FrameworkInfo(name="jobs")
    assert api_address(info) == ""
    info.labels.labels.add(key=API_LABEL, value="10.0.0.5:5060")
    assert api_address(info) == "10.0.0.5:5060"
