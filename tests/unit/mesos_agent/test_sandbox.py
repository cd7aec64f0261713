"""Sandbox layout: the id encoding (injective, reversible, one path component), run directories made for the
task's user, and finding runs without following links."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesos_agent.sandbox import (
    RUN_DIR_MODE,
    TRAVERSABLE,
    decode_id,
    encode_id,
    latest_runs,
    make_run_dir,
    run_dirs,
    sandbox_path,
    secure_work_dir,
)

ids = st.text(min_size=1, max_size=300)
# Few characters, those that escapes are made of: pairs that could collide come often.
tricky = st.text(alphabet="a_/%.2EF:é", min_size=0, max_size=12)


@given(st.one_of(ids, tricky), st.one_of(ids, tricky))
@settings(max_examples=1000)
def test_encoding_is_injective(a: str, b: str) -> None:
    if a != b:
        assert encode_id(a) != encode_id(b)


@given(st.one_of(ids, tricky))
@settings(max_examples=500)
def test_encoding_is_one_safe_path_component_and_reversible(value: str) -> None:
    name = encode_id(value)
    assert name not in ("", ".", "..") and not name.startswith("/")
    assert "/" not in name and "\0" not in name
    assert len(name.encode()) <= 255
    decoded = decode_id(name)
    assert decoded == value or (decoded is None and "%%" in name)  # only a hashed long name is not reversible


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("a/b", "a%2Fb"),
        ("a_b", "a_b"),
        ("a%2Fb", "a%252Fb"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        (".hidden", ".hidden"),
        ("task-1.x@host", "task-1.x@host"),
        ("é", "%C3%A9"),
        ("a b", "a%20b"),
    ],
)
def test_encoding_examples(value: str, name: str) -> None:
    assert encode_id(value) == name
    assert decode_id(name) == value


def test_names_encode_id_never_makes_do_not_decode() -> None:
    for name in ("%41", "a%2fb", "%2", "%ZZ", "a b", "%C3", "x%%abc"):
        assert decode_id(name) is None, name


def test_long_ids_stay_unique_and_within_name_max() -> None:
    a, b = "/" * 200 + "a", "/" * 200 + "b"
    assert encode_id(a) != encode_id(b)
    assert all(len(encode_id(v)) <= 255 for v in (a, b))


def test_a_run_dir_belongs_to_the_task_user_and_its_parents_are_traversable(tmp_path: Path) -> None:
    owner = (65534, 65534) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    old = os.umask(0o077)  # whatever the umask
    try:
        run = sandbox_path(tmp_path, "a1", "fw", "t", "c1")
        make_run_dir(str(run), "c1", owner=owner)
    finally:
        os.umask(old)
    st_run = run.stat()
    assert (st_run.st_uid, st_run.st_gid) == owner
    assert stat.S_IMODE(st_run.st_mode) & ~RUN_DIR_MODE == 0
    for parent in (run.parent, run.parent.parent, tmp_path / "agents", tmp_path / "agents" / "a1"):
        assert stat.S_IMODE(parent.stat().st_mode) == TRAVERSABLE, parent
    assert os.readlink(run.parent / "latest") == "c1"


def test_secure_work_dir_keeps_the_agents_records_private(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    (work / "meta").mkdir(mode=0o755)
    secure_work_dir(work)
    assert stat.S_IMODE(work.stat().st_mode) == 0o711
    assert stat.S_IMODE((work / "meta").stat().st_mode) == 0o700
    assert stat.S_IMODE((work / "runtime").stat().st_mode) == 0o700
    assert stat.S_IMODE((work / "agents").stat().st_mode) == TRAVERSABLE


def test_runs_are_found_without_following_links(tmp_path: Path) -> None:
    old = sandbox_path(tmp_path, "a0", "fw", "t", "c0")
    new = sandbox_path(tmp_path, "a1", "fw", "t", "c1")
    elsewhere = sandbox_path(tmp_path, "a1", "fw", "other", "c2")
    for run, cid in ((old, "c0"), (new, "c1"), (elsewhere, "c2")):
        make_run_dir(str(run), cid)
    (tmp_path / "host" / "etc").mkdir(parents=True)
    # A task (root) points `latest` elsewhere and replaces another executor's runs with a link.
    (new.parent / "latest").unlink()
    (new.parent / "latest").symlink_to(tmp_path / "host")
    os.rename(elsewhere.parent, elsewhere.parent.with_name("runs.old"))
    elsewhere.parent.symlink_to(tmp_path / "host")
    assert latest_runs(tmp_path, "fw", "t", prefer_agent="a1") == {"fw": new}
    assert latest_runs(tmp_path, None, "t", prefer_agent="a0") == {"fw": old}
    assert latest_runs(tmp_path, None, "other", prefer_agent="a1") == {}
    assert sorted(run for _, _, run in run_dirs(tmp_path)) == sorted([old, new])
