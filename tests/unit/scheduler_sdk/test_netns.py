"""The pure parts of the namespace hosts: names and addresses, the commands, free subnets, the state file, the
command line's errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from scheduler_sdk import netns
from scheduler_sdk.netns import NetnsNetwork
from scheduler_sdk.netns_cluster import NetnsCluster, main


def test_hosts_get_addresses_after_the_bridge_and_interface_names_that_fit() -> None:
    net = NetnsNetwork("t1234567", "10.231.5.0/24")
    assert (net.bridge, net.gateway, net.prefixlen) == ("amt1234567", "10.231.5.1", 24)
    master, agent = net.host("master", 0), net.host("agent1", 1)
    assert (master.namespace, master.veth, master.address) == ("aiomesos-t1234567-master", "amt1234567v0", "10.231.5.2")
    assert agent.address == "10.231.5.3" and len(net.host("a", 252).veth) <= 15
    with pytest.raises(ValueError, match="does not fit"):
        net.host("a", 253)
    for bad in ("", "Upper", "1digit", "toolongname"):
        with pytest.raises(ValueError, match="network name"):
            NetnsNetwork(bad)
    with pytest.raises(ValueError, match="/24 or larger"):
        NetnsNetwork("x", "10.0.0.0/25")
    with pytest.raises(ValueError, match="host name"):
        net.host("Bad_Name", 1)


def test_the_commands_wire_a_host_to_the_bridge_and_run_inside_it() -> None:
    net = NetnsNetwork("x", "10.231.9.0/24")
    host = net.host("agent1", 1)
    up = net.host_up(host)
    assert up[0] == ["ip", "netns", "add", "aiomesos-x-agent1"]
    assert ["ip", "link", "add", "amxv1", "type", "veth", "peer", "name", "eth0", "netns", host.namespace] in up
    assert ["ip", "link", "set", "amxv1", "master", "amx"] in up
    assert ["ip", "-n", host.namespace, "addr", "add", "10.231.9.3/24", "dev", "eth0"] in up
    assert net.host_down(host) == [["ip", "netns", "del", host.namespace]]
    assert net.bridge_up()[0] == ["ip", "link", "add", "amx", "type", "bridge"]
    # Only the network (and with a name, the UTS) namespace changes: cgroups stay the machine's.
    assert host.exec_argv(["true"]) == ["nsenter", "--net=/run/netns/aiomesos-x-agent1", "--", "true"]
    named = host.exec_argv(["true"], hostname="agent1")
    assert named[:5] == ["nsenter", "--net=/run/netns/aiomesos-x-agent1", "--", "unshare", "--uts"]
    assert named[-2:] == ["agent1", "true"]


def test_a_partition_drops_all_but_loopback_and_healing_deletes_its_table() -> None:
    host = NetnsNetwork("x").host("agent1", 1)
    assert netns.partition_commands(host) == [["ip", "netns", "exec", host.namespace, "nft", "-f", "-"]]
    assert "policy drop" in netns.PARTITION_RULES and 'iifname "lo" accept' in netns.PARTITION_RULES
    assert netns.heal_commands(host)[0][-3:] == ["table", "inet", netns.PARTITION_TABLE]


def test_free_subnet_skips_the_networks_in_use() -> None:
    used = [ipaddress.IPv4Network("10.231.0.0/24"), ipaddress.IPv4Network("10.231.1.128/25")]
    assert netns.free_subnet(used) == "10.231.2.0/24"
    assert netns.free_subnet([]) == "10.231.0.0/24"
    # Other names look from elsewhere (two test sessions setting up at once), wrapping round.
    assert netns.free_subnet([], "t4242") == netns.free_subnet([], "t4242") != "10.231.0.0/24"
    last = ipaddress.IPv4Network("10.231.255.0/24")
    everything_but_the_first = [n for n in netns.SUBNET_BASE.subnets(new_prefix=24) if n.network_address.packed[2]]
    assert netns.free_subnet(everything_but_the_first, "t4242") == "10.231.0.0/24"
    assert last in everything_but_the_first
    with pytest.raises(netns.NetnsError, match="no free"):
        netns.free_subnet([ipaddress.IPv4Network("10.0.0.0/8")])


def test_the_state_file_lets_another_process_find_the_hosts(tmp_path: Path) -> None:
    c = NetnsCluster(tmp_path, name="s", network=NetnsNetwork("s", "10.231.3.0/24"))
    for i, name in enumerate(("master", "agent1")):
        c.hosts[name] = c.network.host(name, i)  # type: ignore[union-attr]
    c.pids["agent1"] = 4242
    c._numbers = 2
    c._save()
    loaded = NetnsCluster.load(tmp_path)
    assert loaded.hosts == c.hosts and loaded.pids == {"agent1": 4242}
    assert loaded.master_address == "10.231.3.2:5050" and loaded.network == c.network
    assert loaded._host("agent1").address == "10.231.3.3"
    with pytest.raises(ValueError, match="no host 'agent9'; hosts: master, agent1"):
        loaded._host("agent9")


def test_the_command_line_says_what_is_wrong_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(tmp_path), "heal", "agent1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("netns-cluster: ")
    assert main(["--dir", str(tmp_path), "down"]) == 0  # nothing up: nothing to do


def test_missing_commands_are_named_with_their_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.shutil, "which", lambda tool: None if tool in ("nft", "unshare") else f"/bin/{tool}")
    assert netns.missing_tools() == "missing commands: nft, unshare (Debian: apt-get install nftables util-linux)"
    monkeypatch.setattr(netns.shutil, "which", lambda tool: f"/bin/{tool}")
    assert netns.missing_tools() == ""
