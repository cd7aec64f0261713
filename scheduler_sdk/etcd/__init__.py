"""Our thin asyncio client of etcd's v3 API (see `client`'s docstring for why not aetcd)."""

from scheduler_sdk.etcd.client import (
    Compare,
    EndpointStatus,
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    EtcdTLS,
    KeyValue,
    Op,
    TxnResult,
    WatchEvent,
    parse_endpoint,
    parse_url,
    prefix_end,
)

__all__ = [
    "Compare",
    "EndpointStatus",
    "EtcdClient",
    "EtcdCompacted",
    "EtcdError",
    "EtcdTLS",
    "KeyValue",
    "Op",
    "TxnResult",
    "WatchEvent",
    "parse_endpoint",
    "parse_url",
    "prefix_end",
]
