"""Sandbox files: path safety, listings, ranges, tail and follow."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mesos_agent import files
from mesos_agent.files import PathRefused

Opener = Callable[..., int]


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    box = tmp_path / "sandbox"
    (box / "sub").mkdir(parents=True)
    (box / "stdout").write_text("one\ntwo\nthree\n")
    (box / "sub" / "inner.txt").write_text("inner")
    (tmp_path / "secret").write_text("outside")
    return box


@pytest.fixture
def opened(sandbox: Path) -> Iterator[Opener]:
    fds: list[int] = []

    def open_(name: str, content: bytes | None = None) -> int:
        if content is not None:
            (sandbox / name).write_bytes(content)
        fd, _ = files.open_file(sandbox, name)
        fds.append(fd)
        return fd

    yield open_
    for fd in fds:
        os.close(fd)


# ------------------------------------------------------------------ path safety
@pytest.mark.parametrize("path", ["..", "../secret", "sub/../../secret", "sub/..", "./../sandbox/stdout"])
def test_dot_dot_is_refused(sandbox: Path, path: str) -> None:
    with pytest.raises(PathRefused, match=r"'\.\.' is not allowed"):
        files.resolve(sandbox, path)


@pytest.mark.parametrize("path", ["/etc/passwd", "/", str(Path(__file__))])
def test_absolute_paths_are_refused(sandbox: Path, path: str) -> None:
    with pytest.raises(PathRefused, match="absolute paths are not allowed"):
        files.resolve(sandbox, path)


def test_symlink_out_of_the_sandbox_is_refused(sandbox: Path) -> None:
    (sandbox / "escape").symlink_to(sandbox.parent / "secret")
    (sandbox / "escape_dir").symlink_to("/etc")
    (sandbox / "sub" / "relative_escape").symlink_to("../../secret")
    for path in ("escape", "escape_dir", "escape_dir/passwd", "sub/relative_escape"):
        with pytest.raises(PathRefused, match="out of the sandbox through a symlink"):
            files.resolve(sandbox, path)
    with pytest.raises(PathRefused):
        files.open_file(sandbox, "escape")
    with pytest.raises(PathRefused):
        files.list_dir(sandbox, "escape_dir")


def test_symlink_inside_the_sandbox_is_allowed(sandbox: Path) -> None:
    (sandbox / "link").symlink_to("sub/inner.txt")
    (sandbox / "sub" / "up").symlink_to("../stdout")
    (sandbox / "dirlink").symlink_to("sub")
    assert files.resolve(sandbox, "link") == (sandbox / "sub" / "inner.txt").resolve()
    assert files.resolve(sandbox, "sub/up") == (sandbox / "stdout").resolve()
    fd, _ = files.open_file(sandbox, "link")
    try:
        assert b"".join(d for _, d in files.read_range(fd, 0)) == b"inner"
    finally:
        os.close(fd)
    assert [e.path for e in files.list_dir(sandbox, "dirlink")] == ["dirlink/inner.txt", "dirlink/up"]


def test_a_sandbox_reached_through_a_link_is_its_real_path(tmp_path: Path, sandbox: Path) -> None:
    latest = tmp_path / "latest"
    latest.symlink_to(sandbox)
    assert files.resolve(latest, "stdout") == (sandbox / "stdout").resolve()
    assert files.resolve(latest, "") == sandbox.resolve()


def test_plain_paths_and_missing_files(sandbox: Path) -> None:
    assert files.resolve(sandbox, "") == sandbox.resolve()
    assert files.resolve(sandbox, ".") == sandbox.resolve()
    assert files.resolve(sandbox, "sub/inner.txt") == (sandbox / "sub" / "inner.txt").resolve()
    assert files.resolve(sandbox, "not/yet") == (sandbox / "not" / "yet").resolve()
    with pytest.raises(FileNotFoundError):
        files.open_file(sandbox, "missing")
    with pytest.raises(IsADirectoryError):
        files.open_file(sandbox, "sub")
    with pytest.raises(PathRefused, match="NUL"):
        files.resolve(sandbox, "a\0b")


# ------------------------------------------------------------------ listings
def test_list_dir_is_sorted_with_ls_modes(sandbox: Path) -> None:
    os.chmod(sandbox / "stdout", 0o640)
    (sandbox / "link").symlink_to("stdout")
    entries = files.list_dir(sandbox)
    assert [e.path for e in entries] == ["link", "stdout", "sub"]
    by = {e.path: e for e in entries}
    assert by["stdout"].mode == "-rw-r-----" and by["stdout"].size == len("one\ntwo\nthree\n")
    assert by["sub"].is_dir and by["sub"].mode.startswith("d")
    assert by["link"].mode.startswith("l") and not by["link"].is_dir
    assert [e.path for e in files.list_dir(sandbox, "sub")] == ["sub/inner.txt"]
    # A file lists as itself, like ls.
    assert [e.path for e in files.list_dir(sandbox, "stdout")] == ["stdout"]


# ------------------------------------------------------------------ ranges and tail
def test_read_range_and_offsets(opened: Opener) -> None:
    fd = opened("data", bytes(range(256)) * 1000)
    chunks = list(files.read_range(fd, 0, chunk=10_000))
    assert b"".join(d for _, d in chunks) == bytes(range(256)) * 1000
    assert [o for o, _ in chunks][:3] == [0, 10_000, 20_000]
    assert b"".join(d for _, d in files.read_range(fd, 10, 5)) == bytes(range(10, 15))
    assert files.start_offset(100, -10) == 90
    assert files.start_offset(100, -1000) == 0
    assert files.start_offset(100, 1000) == 100


@pytest.mark.parametrize(
    ("content", "n", "expected"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc\n", 3, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
        (b"a\nb\nc", 1, b"c"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\n\n\nb\n", 2, b"\nb\n"),
        (b"", 3, b""),
        (b"\n", 1, b"\n"),
        (b"single line no newline", 1, b"single line no newline"),
    ],
)
def test_tail(opened: Opener, content: bytes, n: int, expected: bytes) -> None:
    fd = opened("t", content)
    start = files.tail_offset(fd, n)
    assert b"".join(d for _, d in files.read_range(fd, start)) == expected


def test_tail_reads_backwards_across_blocks(opened: Opener) -> None:
    lines = [f"line {i:05d} {'x' * (i % 37)}\n".encode() for i in range(5000)]
    fd = opened("big", b"".join(lines))
    for n in (1, 7, 300, 4999, 5000, 6000):
        start = files.tail_offset(fd, n, block=64)
        assert b"".join(d for _, d in files.read_range(fd, start)) == b"".join(lines[-n:])


def test_tail_zero_is_the_end(opened: Opener) -> None:
    fd = opened("t", b"a\nb\n")
    assert files.tail_offset(fd, 0) == 4


# ------------------------------------------------------------------ follow
async def test_follow_sees_appended_data_and_ends_once_over_and_drained(sandbox: Path) -> None:
    path = sandbox / "stdout"
    fd, _ = files.open_file(sandbox, "stdout")
    over = False
    got: list[tuple[int, bytes]] = []

    async def writer() -> None:
        nonlocal over
        for i in range(5):
            await asyncio.sleep(0.03)
            with path.open("a") as f:
                f.write(f"more {i}\n")
        over = True  # the task ended: whatever it wrote must still arrive

    try:
        w = asyncio.create_task(writer())
        async for item in files.follow(fd, 0, lambda: over, poll=0.01):
            got.append(item)
        await w
    finally:
        os.close(fd)
    data = b"".join(d for _, d in got)
    assert data == b"one\ntwo\nthree\n" + b"".join(f"more {i}\n".encode() for i in range(5))
    offsets = [o for o, _ in got]
    assert offsets == sorted(offsets) and len(got) > 1


async def test_follow_written_just_before_the_end_is_drained(sandbox: Path) -> None:
    fd, _ = files.open_file(sandbox, "stdout")
    calls = 0

    def is_over() -> bool:
        # Over from the first question on; but what is there by then must be sent.
        nonlocal calls
        calls += 1
        return True

    try:
        data = b"".join([d async for _, d in files.follow(fd, 4, is_over, poll=0.01)])
    finally:
        os.close(fd)
    assert data == b"two\nthree\n"


async def test_follow_with_a_limit(sandbox: Path) -> None:
    fd, _ = files.open_file(sandbox, "stdout")
    try:
        data = b"".join([d async for _, d in files.follow(fd, 0, lambda: False, limit=5, poll=0.01)])
    finally:
        os.close(fd)
    assert data == b"one\nt"


def test_disk_usage_counts_blocks(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 100_000)
    os.link(tmp_path / "d" / "f", tmp_path / "d" / "hard")
    used = files.disk_usage(tmp_path)
    assert 100_000 <= used < 200_000  # the hard link counted once


def test_a_fifo_is_refused_without_blocking(sandbox: Path) -> None:
    os.mkfifo(sandbox / "pipe")
    with pytest.raises(PathRefused, match="not a regular file"):
        files.open_file(sandbox, "pipe")
    assert [e.mode[0] for e in files.list_dir(sandbox) if e.path == "pipe"] == ["p"]


# ------------------------------------------------------------------ a task changing its sandbox under the agent
def test_absolute_links_into_the_sandbox_loops_and_files_on_the_way(sandbox: Path) -> None:
    (sandbox / "abs").symlink_to(sandbox.resolve() / "sub" / "inner.txt")
    (sandbox / "abs_root").symlink_to(sandbox.resolve())
    (sandbox / "loop").symlink_to("loop")
    (sandbox / "up_and_out").symlink_to("sub/../..")
    fd, real = files.open_file(sandbox, "abs")
    try:
        assert os.read(fd, 100) == b"inner" and real == (sandbox / "sub" / "inner.txt").resolve()
    finally:
        os.close(fd)
    assert "abs_root/stdout" in [e.path for e in files.list_dir(sandbox, "abs_root")]
    with pytest.raises(PathRefused, match="too many levels of symbolic links"):
        files.open_file(sandbox, "loop")
    with pytest.raises(PathRefused, match="out of the sandbox through a symlink"):
        files.list_dir(sandbox, "up_and_out")
    with pytest.raises(NotADirectoryError):
        files.open_file(sandbox, "stdout/x")
    with pytest.raises(NotADirectoryError):
        files.list_dir(sandbox, "stdout/x")
    with pytest.raises(FileNotFoundError):
        files.list_dir(sandbox, "missing")


def test_a_directory_swapped_for_a_symlink_never_serves_outside_files(tmp_path: Path) -> None:
    """The race an auditor found: a task flips a directory of its sandbox with a symlink to a directory outside
    while the agent serves it. Whatever the timing, no read and no listing may show what lies outside."""
    box = tmp_path / "box"
    (box / "d").mkdir(parents=True)
    (box / "d" / "f").write_text("inside")
    (box / "d" / "inside-only").write_text("")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("SECRET")
    (outside / "outside-only").write_text("")
    stop = threading.Event()
    flips = 0

    def flipper() -> None:
        nonlocal flips
        while not stop.is_set():
            os.rename(box / "d", box / "d.real")
            os.symlink(outside, box / "d")
            os.unlink(box / "d")
            os.rename(box / "d.real", box / "d")
            flips += 1

    thread = threading.Thread(target=flipper, daemon=True)
    thread.start()
    inside_reads = outside_reads = inside_lists = outside_lists = 0
    deadline = time.monotonic() + 2.0
    try:
        while time.monotonic() < deadline:
            try:
                fd, _ = files.open_file(box, "d/f")
            except (PathRefused, OSError):
                pass
            else:
                try:
                    data = os.pread(fd, 100, 0)
                finally:
                    os.close(fd)
                outside_reads += data == b"SECRET"
                inside_reads += data == b"inside"
            try:
                names = {e.path for e in files.list_dir(box, "d")}
            except (PathRefused, OSError):
                pass
            else:
                outside_lists += "d/outside-only" in names
                inside_lists += "d/inside-only" in names
    finally:
        stop.set()
        thread.join(5)
    assert flips > 100, f"the flipper hardly ran ({flips} flips): the test proves nothing"
    assert inside_reads > 0 and inside_lists > 0, "nothing was served at all: the test proves nothing"
    assert (outside_reads, outside_lists) == (0, 0), (
        f"{outside_reads} reads and {outside_lists} listings of files outside the sandbox"
    )


# ------------------------------------------------------------------ the task user's rights
def _st(mode: int, uid: int, gid: int, nlink: int = 1) -> os.stat_result:
    return os.stat_result((mode, 0, 0, nlink, uid, gid, 0, 0, 0, 0))


def test_reader_follows_the_kernels_mode_bit_rules() -> None:
    alice = files.Reader(1000, frozenset({1000, 27}))
    assert alice.allows(_st(0o100400, 1000, 0), files.R_OK)  # owner
    assert not alice.allows(_st(0o100044, 1000, 0), files.R_OK)  # owner bits decide for the owner
    assert alice.allows(_st(0o100040, 0, 27), files.R_OK)  # a supplementary group
    assert not alice.allows(_st(0o100004, 0, 27), files.R_OK)  # group bits decide for the group
    assert alice.allows(_st(0o100004, 0, 0), files.R_OK)  # others
    assert not alice.allows(_st(0o040700, 0, 0), files.X_OK)
    assert alice.allows(_st(0o040711, 0, 0), files.X_OK) and not alice.allows(_st(0o040711, 0, 0), files.R_OK)
    assert files.Reader(0, frozenset({0})).allows(_st(0o100000, 5, 5), files.R_OK | files.X_OK)


def test_a_hard_link_is_served_only_when_the_task_user_owns_it() -> None:
    nobody = files.Reader(65534, frozenset({65534}))
    assert nobody.may_read_file(_st(0o100644, 65534, 65534, nlink=2)) is None
    why = nobody.may_read_file(_st(0o100644, 0, 0, nlink=2))
    assert why is not None and "hard link to a file of uid 0" in why
    assert nobody.may_read_file(_st(0o100644, 0, 0, nlink=1)) is None
    assert "may not read it" in (nobody.may_read_file(_st(0o100600, 0, 0)) or "")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@needs_root
def test_what_the_sandbox_owner_may_not_read_is_refused(sandbox: Path) -> None:
    for path in [sandbox, *sandbox.rglob("*")]:
        os.chown(path, 65534, 65534)
    os.link("/etc/passwd", sandbox / "passwd")
    (sandbox / "secret").write_text("root only")
    os.chmod(sandbox / "secret", 0o600)
    (sandbox / "closed").mkdir(mode=0o700)
    (sandbox / "closed" / "f").write_text("x")
    for path, why in (
        ("passwd", "hard link to a file of uid 0"),
        ("secret", "may not read it"),
        ("closed/f", "may not enter 'closed'"),
    ):
        with pytest.raises(files.AccessRefused, match=why):
            files.open_file(sandbox, path)
    with pytest.raises(files.AccessRefused, match="may not list it"):
        files.list_dir(sandbox, "closed")
    # What is the owner's is served, and the sandbox listed (the refused entries are listed, not read).
    fd, _ = files.open_file(sandbox, "stdout")
    os.close(fd)
    assert "passwd" in [e.path for e in files.list_dir(sandbox)]


def test_the_sandbox_is_reached_from_the_work_dir_without_following_links(tmp_path: Path) -> None:
    work = tmp_path / "work"
    box = work / "agents" / "a" / "runs" / "c1"
    box.mkdir(parents=True)
    (box / "stdout").write_text("mine")
    host = tmp_path / "host"
    host.mkdir()
    (host / "stdout").write_text("host's")
    fd, real = files.open_file(box, "stdout", within=work)
    os.close(fd)
    assert real == box / "stdout"
    assert [e.path for e in files.list_dir(box, within=work)] == ["stdout"]
    # A task replaces a directory of the layout with a link elsewhere: refused, not followed.
    os.rename(work / "agents" / "a" / "runs", work / "agents" / "a" / "runs.old")
    (work / "agents" / "a" / "runs").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "c1").mkdir(parents=True)
    (tmp_path / "elsewhere" / "c1" / "stdout").write_text("host's")
    with pytest.raises(files.AccessRefused, match="not where the agent made it: 'agents/a/runs'"):
        files.open_file(box, "stdout", within=work)
    with pytest.raises(files.AccessRefused, match="not in the agent's work dir"):
        files.list_dir(host, within=work)
