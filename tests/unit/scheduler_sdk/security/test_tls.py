"""Real TLS over loopback: mutual TLS names the peer from its certificate, a token port from its token; a plaintext
client and a client trusting another CA cannot connect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from scheduler_sdk.security import CertificateAuthority, ClientConfig
from scheduler_sdk.security.credentials import Credentials, add_token
from scheduler_sdk.security.tls import ServerTLS, channel_credentials, peer_principal

pytestmark = pytest.mark.asyncio


def who_am_i(credentials: Credentials | None):  # type: ignore[no-untyped-def]
    async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        principal = peer_principal(context, credentials)
        return str(principal).encode() if principal else b"nobody"

    return handle


def _issue(ca: CertificateAuthority, directory: Path, name: str, role: str) -> tuple[Path, Path]:
    return ca.issue(name, role).write(directory)


@pytest.fixture
async def pki(tmp_path: Path) -> AsyncIterator[dict[str, object]]:
    ca = CertificateAuthority.create(tmp_path / "ca")
    master_cert, master_key = _issue(ca, tmp_path, "master", "master")
    tokens = tmp_path / "credentials.toml"
    token = add_token(tokens, "ml", "framework")
    credentials = Credentials.load(tokens)
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(who_am_i(credentials))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.Who", {"Am": handler})])
    ca_path = tmp_path / "ca" / "ca.crt"
    mtls = server.add_secure_port("127.0.0.1:0", ServerTLS(master_cert, master_key, ca_path).credentials())
    token_port = server.add_secure_port(
        "127.0.0.1:0", ServerTLS(master_cert, master_key, ca_path, require_client_cert=False).credentials()
    )
    await server.start()
    yield {"ca": ca, "dir": tmp_path, "mtls": mtls, "token_port": token_port, "token": token, "ca_path": ca_path}
    await server.stop(0)


async def _who(port: int, credentials: grpc.ChannelCredentials | None) -> bytes:
    target = f"127.0.0.1:{port}"
    channel = grpc.aio.secure_channel(target, credentials) if credentials else grpc.aio.insecure_channel(target)
    async with channel:
        return await channel.unary_unary("/t.Who/Am")(b"", timeout=5)


async def test_mutual_tls_names_the_peer_from_its_certificate(pki: dict) -> None:
    cert, key = _issue(pki["ca"], pki["dir"], "host-1", "agent")
    config = ClientConfig(master="", ca=pki["ca_path"], cert=cert, key=key)
    assert await _who(pki["mtls"], channel_credentials(config)) == b"agent/host-1"


async def test_a_token_names_the_peer_on_the_token_port(pki: dict) -> None:
    config = ClientConfig(master="", ca=pki["ca_path"], token=pki["token"])
    assert await _who(pki["token_port"], channel_credentials(config)) == b"framework/ml"
    wrong = ClientConfig(master="", ca=pki["ca_path"], token="not-a-token")
    assert await _who(pki["token_port"], channel_credentials(wrong)) == b"nobody"
    with pytest.raises(grpc.aio.AioRpcError):  # no certificate: the mutual-TLS port refuses the handshake
        await _who(pki["mtls"], channel_credentials(config))


async def test_plaintext_and_foreign_ca_clients_cannot_connect(pki: dict, tmp_path: Path) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as plain:
        await _who(pki["token_port"], None)
    assert plain.value.code() == grpc.StatusCode.UNAVAILABLE
    other = CertificateAuthority.create(tmp_path / "other")
    cert, key = _issue(other, tmp_path / "o", "host-1", "agent")
    foreign = ClientConfig(master="", ca=tmp_path / "other" / "ca.crt", cert=cert, key=key)
    for port in (pki["mtls"], pki["token_port"]):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _who(port, channel_credentials(foreign))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
