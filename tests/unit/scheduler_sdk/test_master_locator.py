"""The `--master` forms (one parser) and the order in which a client tries masters (the locator), pure."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from scheduler_sdk._daemon.flags import FlagParser, master_spec
from scheduler_sdk.master_locator import MAX_REDIRECTS, MasterLocator, NoMasterError
from scheduler_sdk.masters import DEFAULT_PREFIX, LEADER_METADATA, MasterRecord, MasterSpec, parse_master
from scheduler_sdk.security.certs import SecurityError
from scheduler_sdk.security.config import ClientConfig


# ----------------------------------------------------------------------------------------- the parser
@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("127.0.0.1:5050", MasterSpec(addresses=("127.0.0.1:5050",))),
        (" m1:5050, m2:5050 ,m3:5051", MasterSpec(addresses=("m1:5050", "m2:5050", "m3:5051"))),
        ("m1:1,m2:2,m1:1", MasterSpec(addresses=("m1:1", "m2:2"))),
        ("[::1]:5050", MasterSpec(addresses=("[::1]:5050",))),
        ("etcd://127.0.0.1:2379", MasterSpec(etcd=("127.0.0.1:2379",), prefix=DEFAULT_PREFIX)),
        ("etcd://e1:2379,e2:2379/", MasterSpec(etcd=("e1:2379", "e2:2379"), prefix=DEFAULT_PREFIX)),
        ("ETCD://e1:2379/prod/mesos/", MasterSpec(etcd=("e1:2379",), prefix="/prod/mesos")),
    ],
)
def test_master_forms_parse(text: str, spec: MasterSpec) -> None:
    assert parse_master(text) == spec
    assert parse_master(str(spec)) == spec  # the text form round-trips (the CLI passes it on as text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("localhost", "'localhost' is not HOST:PORT"),
        (":5050", "':5050' is not HOST:PORT"),
        ("m1:5050,", "'' is not HOST:PORT"),
        ("m1:0", "the port must be 1-65535"),
        ("m1:65536", "the port must be 1-65535"),
        ("m1:http", "the port must be 1-65535"),
        ("zk://z1:2181/mesos", "unknown scheme 'zk'"),
        ("http://m1:5050", "unknown scheme 'http'"),
        ("etcd://", "no etcd endpoint"),
        ("etcd:///aiomesos", "no etcd endpoint"),
        ("etcd://e1/aiomesos", "'e1' is not HOST:PORT"),
        ("etcd://e1:2379/a//b", "etcd prefix"),
    ],
)
def test_bad_master_forms_are_one_readable_line(text: str, why: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_master(text)
    message = str(e.value)
    assert why in message and f"master {text!r}" in message and "etcd://HOST:PORT" in message
    assert "\n" not in message


def test_the_flag_type_and_the_client_config_use_the_same_parser(tmp_path: Path) -> None:
    parser = FlagParser(prog="t")
    parser.add_flag("--master", type=master_spec, env=False)
    assert parser.parse_args(["--master", "a:1, b:2"]).master == "a:1,b:2"
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--master", "zk://a:1"])
    assert exited.value.code == 2
    good = tmp_path / "good.toml"
    good.write_text('master = "etcd://127.0.0.1:2379/aiomesos"\n')
    assert ClientConfig.load(good).master == "etcd://127.0.0.1:2379/aiomesos"
    bad = tmp_path / "bad.toml"
    bad.write_text('master = "m1:5050,zk://x"\n')
    with pytest.raises(SecurityError, match=r"bad.toml: master 'm1:5050,zk://x'"):
        ClientConfig.load(bad)


# ----------------------------------------------------------------------------------------- the order
class Refusal(grpc.RpcError):
    """What a standby answers: UNAVAILABLE, naming the leader in its trailing metadata (or nobody)."""

    def __init__(self, leader: str | None) -> None:
        self.leader = leader

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((LEADER_METADATA, self.leader),) if self.leader else ()


async def test_a_list_is_tried_in_turn_then_the_client_backs_off() -> None:
    locator = MasterLocator("m1:1,m2:2,m3:3")
    tried, at_once = [], []
    for _ in range(6):
        address = await locator.candidate()
        tried.append(address)
        at_once.append(locator.failed(address, ConnectionError("refused")))
    assert tried == ["m1:1", "m2:2", "m3:3", "m1:1", "m2:2", "m3:3"]
    assert at_once == [True, True, False, True, True, False]  # a backoff after each round


async def test_a_single_address_backs_off_after_every_failure() -> None:
    locator = MasterLocator("m1:1")
    assert [locator.failed(await locator.candidate(), None) for _ in range(3)] == [False, False, False]


async def test_a_standby_naming_the_leader_sends_the_client_there_at_once() -> None:
    locator = MasterLocator("m1:1,m2:2,m3:3")
    assert await locator.candidate() == "m1:1"
    assert locator.failed("m1:1", Refusal("m3:3")) is True
    assert await locator.candidate() == "m3:3"
    locator.attached("m3:3")
    # The leader's stream breaks later: the client moves on from where it was attached.
    assert locator.failed("m3:3", ConnectionError("reset")) is True
    assert await locator.candidate() == "m1:1"


async def test_a_hint_outside_the_list_is_followed_and_then_the_list_resumes() -> None:
    locator = MasterLocator("m1:1,m2:2")
    assert locator.failed(await locator.candidate(), Refusal("elsewhere:9")) is True
    assert await locator.candidate() == "elsewhere:9"
    assert locator.failed("elsewhere:9", ConnectionError("refused")) is True
    assert await locator.candidate() == "m1:1"  # the hinted one was not in the list: where the list was


async def test_standbys_naming_each_other_do_not_make_a_client_spin() -> None:
    locator = MasterLocator("m1:1,m2:2")
    followed = 0
    address = await locator.candidate()
    while locator.failed(address, Refusal("m2:2" if address == "m1:1" else "m1:1")):
        followed += 1
        address = await locator.candidate()
        assert followed <= MAX_REDIRECTS + 2
    assert followed >= 1
    # After the backoff the redirects count afresh.
    assert locator.failed(await locator.candidate(), Refusal("m2:2")) is True


async def test_a_standby_naming_itself_or_nobody_is_an_ordinary_failure() -> None:
    locator = MasterLocator("m1:1,m2:2")
    assert locator.failed("m1:1", Refusal("m1:1")) is True
    assert await locator.candidate() == "m2:2"
    assert locator.failed("m2:2", Refusal(None)) is False


async def test_etcd_names_the_leader_read_before_every_try() -> None:
    records = [
        MasterRecord("a", "m1:1", token_address="m1:3"),
        None,
        MasterRecord("b", "m2:1", token_address="m2:3"),
    ]
    reads = 0

    async def read() -> MasterRecord | None:
        nonlocal reads
        reads += 1
        return records.pop(0)

    locator = MasterLocator("etcd://e1:2379/x", read_leader=read)
    assert await locator.candidate() == "m1:1"
    assert locator.failed("m1:1", ConnectionError("gone")) is False  # back off, then read etcd again
    with pytest.raises(NoMasterError, match="etcd names no leading master"):
        await locator.candidate()
    assert await locator.candidate() == "m2:1"
    assert reads == 3
    # A refusal naming the leader is followed at once, without reading etcd.
    assert locator.failed("m2:1", Refusal("m9:1")) is True
    assert await locator.candidate() == "m9:1"
    assert reads == 3


async def test_a_bearer_token_client_is_sent_to_the_leaders_token_port() -> None:
    async def read() -> MasterRecord:
        return MasterRecord("a", "m1:1", token_address="m1:3")

    token_only = ClientConfig(ca=Path("ca.crt"), token="t")
    assert await MasterLocator("etcd://e:1", token_only, read_leader=read).candidate() == "m1:3"
    with_cert = ClientConfig(ca=Path("ca.crt"), cert=Path("c"), key=Path("k"))
    assert await MasterLocator("etcd://e:1", with_cert, read_leader=read).candidate() == "m1:1"
