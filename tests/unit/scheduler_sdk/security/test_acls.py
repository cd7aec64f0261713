"""ACLs in Mesos' terms: rule order, ANY/NONE/values, role wildcards, deny rules, owners, reloads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scheduler_sdk.security import Principal
from scheduler_sdk.security.acls import ACTIONS, AclError, Authorizer, parse_acls

ML = Principal("framework", "ml")
ADS = Principal("framework", "ads")
OPS = Principal("operator", "ops")
HOST = Principal("agent", "host-1")


def test_the_defaults_are_safe() -> None:
    authz = Authorizer()
    assert authz.authorize(ML, "register_frameworks", "ml").allowed
    assert authz.authorize(ML, "run_tasks", "nobody").allowed
    root = authz.authorize(ML, "run_tasks", "root")
    assert not root.allowed
    assert root.message == "framework/ml may not run tasks (user 'root': run_tasks rule 1 of built-in ACLs)"
    assert not authz.authorize(OPS, "run_tasks", "root").allowed  # nobody runs as root without an ACL saying so
    assert not authz.authorize(ML, "teardown_frameworks", "ads", owner=ADS).allowed
    assert authz.authorize(ML, "teardown_frameworks", "ml", owner=ML).allowed  # its own
    assert authz.authorize(OPS, "teardown_frameworks", "ads", owner=ADS).allowed
    assert not authz.authorize(ML, "update_weights", "ml").allowed
    assert authz.authorize(OPS, "update_quotas", "ml").allowed
    assert not authz.authorize(ADS, "access_sandboxes", "framework/ml", owner=ML).allowed
    assert authz.authorize(ML, "access_sandboxes", "framework/ml", owner=ML).allowed
    assert authz.authorize(HOST, "register_agents", "host-1").allowed
    assert not authz.authorize(ML, "register_agents", "host-1").allowed
    unauthenticated = authz.authorize(None, "register_frameworks", "ml")
    assert not unauthenticated.allowed and unauthenticated.message.startswith("an unauthenticated caller may not")


def test_the_first_matching_rule_decides_and_permissive_decides_the_rest() -> None:
    acls = {
        "permissive": False,
        "register_frameworks": [
            {"principals": {"values": ["framework/ml"]}, "roles": {"values": ["ml", "ml/*"]}},
            {"principals": {"values": ["framework/ml"]}, "roles": {"type": "NONE"}},
            {"principals": {"type": "ANY"}, "roles": {"values": ["shared"]}},
        ],
        "run_tasks": [{"principals": {"type": "ANY"}, "users": {"values": ["root"]}, "allow": False}],
    }
    authz = Authorizer(parse_acls(json.dumps(acls), "acls.json"))
    assert authz.authorize(ML, "register_frameworks", "ml").allowed
    assert authz.authorize(ML, "register_frameworks", "ml/train").allowed
    assert not authz.authorize(ML, "register_frameworks", "mlx").allowed  # "ml/*" is below ml, not a prefix
    assert not authz.authorize(ML, "register_frameworks", "shared").allowed  # rule 2 (NONE) comes first
    assert authz.authorize(ADS, "register_frameworks", "shared").allowed
    denied = authz.authorize(ADS, "register_frameworks", "ads")
    assert not denied.allowed and "no register_frameworks rule of acls.json allows it" in denied.message
    assert not authz.authorize(ML, "run_tasks", "root").allowed
    assert not authz.authorize(ML, "run_tasks", "nobody").allowed  # no rule: not permissive
    permissive = Authorizer(parse_acls(json.dumps({**acls, "permissive": True})))
    assert permissive.authorize(ML, "run_tasks", "nobody").allowed
    assert not permissive.authorize(ML, "run_tasks", "root").allowed


@pytest.mark.parametrize(
    ("acls", "message"),
    [
        ("[", "not JSON"),
        ('{"launch_missiles": []}', "unknown action 'launch_missiles'"),
        ('{"run_tasks": [{"principals": {"type": "ANY"}}]}', "run_tasks rule 1: needs principals and users"),
        ('{"run_tasks": [{"principals": {"type": "SOME"}, "users": {"type": "ANY"}}]}', "type must be ANY or NONE"),
        ('{"run_tasks": [{"principals": {"values": []}, "users": {"type": "ANY"}}]}', "non-empty list of strings"),
        ('{"permissive": "yes"}', "permissive must be true or false"),
        ('{"run_tasks": [{"principals": {"type": "ANY"}, "users": {"type": "ANY"}, "allow": 1}]}', "allow must be"),
    ],
)
def test_bad_acl_files_name_what_is_wrong(acls: str, message: str) -> None:
    with pytest.raises(AclError, match=message):
        parse_acls(acls, "acls.json")


def test_the_acl_file_is_reloaded_when_it_changes_and_a_broken_edit_keeps_the_old(tmp_path: Path) -> None:
    path = tmp_path / "acls.json"
    path.write_text(
        json.dumps({"update_weights": [{"principals": {"values": ["framework/ml"]}, "roles": {"type": "ANY"}}]})
    )
    authz = Authorizer.from_file(path)
    assert authz.authorize(ML, "update_weights", "ml").allowed
    assert authz.reload() is False
    path.write_text(json.dumps({"update_weights": []}))
    os.utime(path, ns=(1, 1))  # a different mtime even within the clock's resolution
    assert authz.reload() is True
    assert not authz.authorize(ML, "update_weights", "ml").allowed
    path.write_text("{broken")
    os.utime(path, ns=(2, 2))
    with pytest.raises(AclError):
        authz.reload()
    assert not authz.authorize(ML, "update_weights", "ml").allowed  # still the last good ACLs


def test_every_action_has_a_default() -> None:
    authz = Authorizer()
    for action in ACTIONS:
        assert authz.acls.rules[action], action
    with pytest.raises(KeyError):
        authz.authorize(OPS, "launch_missiles")


def test_the_deploy_example_acls_parse_and_say_what_their_comments_promise() -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[4] / "deploy" / "acls.json.example"
    authz = Authorizer.from_file(path)
    assert authz.authorize(ML, "register_frameworks", "ml/train").allowed
    assert not authz.authorize(ML, "register_frameworks", "ads").allowed
    assert not authz.authorize(ML, "run_tasks", "root").allowed
    assert authz.authorize(ML, "run_tasks", "nobody").allowed
    assert authz.authorize(OPS, "update_quotas", "anything").allowed


def test_a_broken_edit_is_reported_once_and_the_next_good_one_is_read(tmp_path: Path) -> None:
    path = tmp_path / "acls.json"
    path.write_text(
        json.dumps({"update_weights": [{"principals": {"values": ["framework/ml"]}, "roles": {"type": "ANY"}}]})
    )
    authz = Authorizer.from_file(path)
    path.write_text("{not json")
    with pytest.raises(AclError):
        authz.reload()
    assert authz.reload() is False  # the same broken file: not read (nor reported) again
    assert authz.authorize(ML, "update_weights", "ml").allowed  # the last good rules stay
    path.write_text(json.dumps({"update_weights": []}))
    assert authz.reload() is True
    assert not authz.authorize(ML, "update_weights", "ml").allowed
