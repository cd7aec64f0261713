"""A typed async client of the jobs service's gRPC API (what `aiomesos job ...` uses)."""

from __future__ import annotations

import grpc

from aiomesos.v1 import jobs_pb2 as jpb
from aiomesos.v1 import jobs_pb2_grpc
from aiomesos.v1 import resources_pb2 as rpb
from scheduler_sdk.channels import open_channel
from scheduler_sdk.security.config import ClientConfig, load_client_config

# The status codes of a call that failed because of what was asked (the message says what), not the service.
REFUSED = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
)
#: The label of the jobs service's FrameworkInfo that says where its Jobs API is (host:port): how the master's
#: web UI finds it.
API_LABEL = "aiomesos.jobs.api"


def api_address(info: rpb.FrameworkInfo) -> str:
    """Where the Jobs API of the jobs service that registered `info` listens ("" if it is not one)."""
    return next((label.value for label in info.labels.labels if label.key == API_LABEL), "")


class JobsError(Exception):
    """The jobs service could not be reached, or refused the request; `code` says how, the message why."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code

    @property
    def refused(self) -> bool:
        """The request itself was wrong (bad spec, unknown job...), as opposed to the service being unreachable."""
        return self.code in REFUSED


class JobsClient:
    """`address`: the jobs service's host:port. `config`: how to reach it and prove who we are (None: the one
    `load_client_config` finds, as the CLI does; `ClientConfig()`: plaintext)."""

    def __init__(self, address: str, *, config: ClientConfig | None = None, timeout: float = 10.0) -> None:
        if not address:
            raise JobsError("no jobs service address: give --jobs HOST:PORT, or a client config that names it")
        self.address = address
        self.config = config if config is not None else load_client_config()
        self.timeout = timeout
        self._channel = open_channel(address, self.config)
        self._stub = jobs_pb2_grpc.JobsStub(self._channel)

    async def __aenter__(self) -> JobsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: object) -> object:
        try:
            return await getattr(self._stub, method)(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() in REFUSED:
                raise JobsError(e.details() or e.code().name, e.code()) from None
            raise JobsError(
                f"cannot reach the jobs service at {self.address}: {e.code().name.lower()}", e.code()
            ) from None

    async def submit(self, spec_yaml: str, filename: str = "", *, dry_run: bool = False) -> jpb.SubmitJobResponse:
        request = jpb.SubmitJobRequest(spec_yaml=spec_yaml, filename=filename, dry_run=dry_run)
        response = await self._call("Submit", request)
        assert isinstance(response, jpb.SubmitJobResponse)
        return response

    async def list_jobs(self) -> list[jpb.JobSummary]:
        response = await self._call("ListJobs", jpb.ListJobsRequest())
        assert isinstance(response, jpb.ListJobsResponse)
        return list(response.jobs)

    async def get_job(self, job_id: str, run_id: str = "") -> jpb.JobStatus:
        response = await self._call("GetJob", jpb.GetJobRequest(job_id=job_id, run_id=run_id))
        assert isinstance(response, jpb.JobStatus)
        return response

    async def stop_job(self, job_id: str) -> jpb.StopJobResponse:
        response = await self._call("StopJob", jpb.StopJobRequest(job_id=job_id))
        assert isinstance(response, jpb.StopJobResponse)
        return response

    async def history(self, job_id: str) -> list[jpb.RunSummary]:
        return list((await self.job_history(job_id)).runs)

    async def job_history(self, job_id: str) -> jpb.JobHistoryResponse:
        """Every run, and a service's (stream's) versions and deployments."""
        response = await self._call("JobHistory", jpb.JobHistoryRequest(job_id=job_id))
        assert isinstance(response, jpb.JobHistoryResponse)
        return response

    async def scale_job(self, job_id: str, count: int, stage: str = "") -> jpb.ScaleJobResponse:
        """A service's instances (a stream stage's workers: `stage`) to `count`."""
        response = await self._call("ScaleJob", jpb.ScaleJobRequest(job_id=job_id, stage=stage, count=count))
        assert isinstance(response, jpb.ScaleJobResponse)
        return response

    async def promote_job(self, job_id: str) -> jpb.PromoteJobResponse:
        """The canaries are healthy: go on replacing the old instances."""
        response = await self._call("PromoteJob", jpb.PromoteJobRequest(job_id=job_id))
        assert isinstance(response, jpb.PromoteJobResponse)
        return response

    async def revert_job(self, job_id: str, version: int) -> jpb.RevertJobResponse:
        """Roll out a new version with the spec of `version`."""
        response = await self._call("RevertJob", jpb.RevertJobRequest(job_id=job_id, version=version))
        assert isinstance(response, jpb.RevertJobResponse)
        return response

    async def get_endpoints(self, job_id: str, stage: str = "") -> list[jpb.Endpoint]:
        """The healthy instances (a stream's workers, of one `stage` or all), stage then index."""
        response = await self._call("GetEndpoints", jpb.GetEndpointsRequest(job_id=job_id, stage=stage))
        assert isinstance(response, jpb.GetEndpointsResponse)
        return list(response.endpoints)
