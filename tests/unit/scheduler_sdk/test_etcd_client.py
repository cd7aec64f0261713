"""The pure parts of the etcd client: URLs and endpoints, and how compares and operations become etcd's wire types."""

from __future__ import annotations

import pytest

from aiomesos.etcd.v3 import rpc_pb2 as epb
from scheduler_sdk.etcd import Compare, EtcdClient, EtcdTLS, Op, parse_endpoint, parse_url, prefix_end


@pytest.mark.parametrize(
    ("url", "endpoints", "tls", "prefix"),
    [
        ("etcd://127.0.0.1:2379/aiomesos", ["127.0.0.1:2379"], True, "/aiomesos"),
        ("etcd://a:1,b:2/x/y/", ["a:1", "b:2"], True, "/x/y"),
        ("etcd://h", ["h:2379"], True, "/aiomesos"),
        ("https://10.0.0.1:2379", ["10.0.0.1:2379"], True, "/aiomesos"),
        ("http://127.0.0.1:2379", ["127.0.0.1:2379"], False, "/aiomesos"),
        ("HTTP://127.0.0.1:2379/p", ["127.0.0.1:2379"], False, "/p"),
        ("etcd://[::1]:2379,localhost:2380/c", ["[::1]:2379", "localhost:2380"], True, "/c"),
    ],
)
def test_urls_name_endpoints_tls_and_prefix(url: str, endpoints: list[str], tls: bool, prefix: str) -> None:
    assert parse_url(url) == (endpoints, tls, prefix)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("127.0.0.1:2379", "want etcd://"),
        ("zk://h:2181/mesos", "want etcd://"),
        ("etcd:///aiomesos", "names no endpoint"),
        ("etcd://h:99999/p", "want host:port"),
        ("etcd://h:1,,h:2", "want host:port"),
        ("etcd://user@h:1", "no user, query or fragment"),
        ("etcd://h:1/p?x=1", "no user, query or fragment"),
        ("etcd://h:1/a//b", "want a path"),
        ("etcd://h:x", "want host:port"),
    ],
)
def test_a_bad_url_is_one_readable_line(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as raised:
        parse_url(url)
    assert "\n" not in str(raised.value)


def test_endpoints_default_to_etcds_port_and_bad_ones_are_refused() -> None:
    assert parse_endpoint(" 127.0.0.1 ") == "127.0.0.1:2379"
    with pytest.raises(ValueError, match="etcd endpoint 'a b:1'"):
        parse_endpoint("a b:1")
    with pytest.raises(ValueError, match="no endpoint"):
        EtcdClient([])


def test_prefix_end_covers_exactly_the_prefix() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


def test_compares_and_ops_are_etcds_wire_types() -> None:
    c = Compare.create_revision("/k", "==", 0).to_pb()
    assert (c.key, c.target, c.result, c.WhichOneof("target_union")) == (
        b"/k",
        epb.Compare.CREATE,
        epb.Compare.EQUAL,
        "create_revision",
    )
    v = Compare.value(b"/k", "!=", b"x").to_pb()
    assert (v.target, v.result, v.value) == (epb.Compare.VALUE, epb.Compare.NOT_EQUAL, b"x")
    assert Compare.lease("/k", ">", 7).to_pb().lease == 7
    with pytest.raises(ValueError, match="compare operator '=>'"):
        Compare.version("/k", "=>", 1)

    put = Op.put("/k", b"v", lease=5).to_pb()
    assert (put.request_put.key, put.request_put.value, put.request_put.lease) == (b"/k", b"v", 5)
    delete = Op.delete("/p/", prefix=True).to_pb()
    assert (delete.request_delete_range.key, delete.request_delete_range.range_end) == (b"/p/", b"/p0")
    assert Op.get("/k").to_pb().request_range.range_end == b""
    nested = Op.txn([Compare.version("/k", ">", 0)], [Op.put("/m", b"1")]).to_pb()
    assert nested.request_txn.success[0].request_put.key == b"/m"


def test_plaintext_only_for_an_http_url() -> None:
    tls = EtcdTLS(ca=b"pem")
    client, prefix = EtcdClient.from_url("etcd://h:1,h:2/c", tls)
    assert (client.endpoints, client.tls, prefix) == (["h:1", "h:2"], tls, "/c")
    client, prefix = EtcdClient.from_url("http://h:1", tls)
    assert client.tls is None and prefix == "/aiomesos"
    for url in ("etcd://h:1", "https://h:1"):
        with pytest.raises(ValueError, match="is TLS: it needs a CA"):
            EtcdClient.from_url(url, None)
