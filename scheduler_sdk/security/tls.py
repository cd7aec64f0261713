"""TLS for gRPC, both ends, and who the peer of a call is.

A daemon serves with `ServerTLS(...).credentials()`; a client dials with `channel_credentials(config)`, which
carries the config's client certificate, or its bearer token as `authorization: Bearer ...` on every call.
`peer_principal(context, credentials)` names the caller: from its certificate when the handshake verified one,
else from its token.

grpcio's Python API cannot *request* a client certificate without *requiring* one (require_client_auth=False
means the server never asks), so one port takes either certificates (mutual TLS) or tokens, not both: a daemon
that accepts both listens twice."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from scheduler_sdk.security.certs import MASTER_SERVER_NAME, Principal, SecurityError, principal_of_certificate
from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.security.credentials import Credentials

BEARER = "bearer "
__all__ = ["MASTER_SERVER_NAME", "ServerTLS", "bearer_token", "channel_credentials", "peer_principal"]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise SecurityError(f"cannot read the {what} {path}: {e.strerror}") from None


@dataclass(frozen=True)
class ServerTLS:
    """What a daemon serves TLS with: its certificate and key, and the CA its clients' certificates come from."""

    cert: Path
    key: Path
    ca: Path
    require_client_cert: bool = True

    def credentials(self) -> grpc.ServerCredentials:
        pair = (_read(self.key, "key"), _read(self.cert, "certificate"))
        return grpc.ssl_server_credentials(
            [pair], root_certificates=_read(self.ca, "CA certificate"), require_client_auth=self.require_client_cert
        )


def channel_credentials(config: ClientConfig) -> grpc.ChannelCredentials:
    """TLS to a server the config's CA vouches for, proving who we are with the config's certificate or token."""
    if config.ca is None:
        raise SecurityError("the client config names no CA: a secure channel needs one")
    ca = _read(config.ca, "CA certificate")
    if config.cert is not None and config.key is not None:
        return grpc.ssl_channel_credentials(ca, _read(config.key, "key"), _read(config.cert, "certificate"))
    tls = grpc.ssl_channel_credentials(ca)
    if config.token:
        return grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(config.token))
    return tls


@functools.lru_cache(maxsize=4096)
def _principal_of_pem(pem: bytes) -> Principal | None:
    return principal_of_certificate(pem)


def bearer_token(metadata: Sequence[Any] | None) -> str | None:
    for item in metadata or ():
        key, value = (item.key, item.value) if hasattr(item, "key") else item
        if key == "authorization" and isinstance(value, str) and value[: len(BEARER)].lower() == BEARER:
            return value[len(BEARER) :].strip() or None
    return None


def peer_principal(context: Any, credentials: Credentials | None) -> Principal | None:
    """Who called: the principal its verified certificate names, else the one its bearer token belongs to."""
    pem = (context.auth_context() or {}).get("x509_pem_cert")
    if pem:
        return _principal_of_pem(pem[0])
    token = bearer_token(context.invocation_metadata())
    if token is not None and credentials is not None:
        return credentials.authenticate(token)
    return None
