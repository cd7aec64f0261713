"""gRPC options shared by every aiomesos client and server (large messages for batches, keepalives that notice
a dead peer in about half a minute) and the one way a client opens a channel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from scheduler_sdk.security.config import ClientConfig
from scheduler_sdk.security.tls import MASTER_SERVER_NAME, channel_credentials

MAX_MESSAGE = 64 << 20

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]

SERVER_OPTIONS = [
    *CHANNEL_OPTIONS,
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    # gRPC sets SO_REUSEPORT by default: a second daemon on a port in use would then start and share it.
    ("grpc.so_reuseport", 0),
]


def open_channel(
    address: str, config: ClientConfig | None, *, master: bool = False, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """A channel to `address`: TLS with the config's CA and credential when it has a CA, else plaintext.

    `master`: the server must prove it is *the master* (its certificate names MASTER_SERVER_NAME, which only
    master certificates carry), not merely some host the CA vouches for; that is how an agent or a framework
    knows it is not talking to another agent that took the master's address."""
    merged = [*CHANNEL_OPTIONS, *options]
    if config is None or not config.secure:
        return grpc.aio.insecure_channel(address, options=merged)
    if master:
        merged.append(("grpc.ssl_target_name_override", MASTER_SERVER_NAME))
    return grpc.aio.secure_channel(address, channel_credentials(config), options=merged)
