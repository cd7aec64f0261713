"""gRPC options shared by every aiomesos client and server: large messages (batches) and keepalives that notice
a dead peer in about half a minute."""

from __future__ import annotations

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
