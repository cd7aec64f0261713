"""Shared fixtures. End-to-end tests start real daemons (processes) on loopback with port 0.

Tasks run as `nobody` by default (the agent's `--default-user`), and must reach their sandbox, which is under the
test's `tmp_path`: pytest's own temporary directories (`/tmp/pytest-of-USER/pytest-N`) are 0700, and pytest resets
the first to 0700 at every session's start (another session running meanwhile would close it again). So the
session's base temp dir is made under a directory of our own, `/tmp/aiomesos-pytest-of-USER` (0711), and each
test's `tmp_path` and the base temp dir are made traversable (0711: not listable) for other users (under
pytest-xdist, each worker's base temp dir, in the controller's, and the controller's too)."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import stat
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from scheduler_sdk.etcd import EtcdClient
from scheduler_sdk.local_etcd import LocalEtcd
from scheduler_sdk.security.local import LocalCertificates

TRAVERSABLE = 0o711
KEEP_SESSIONS = 3  # as pytest keeps its last three base temp dirs

# Property tests check what is computed, not how fast: hypothesis' default 200 ms deadline an example (and its
# too-slow health check) fail them, as "unreliable test timings", whenever the machine is busy, as it is with the
# suite's two workers and their daemons. pytest-timeout still bounds every test. HYPOTHESIS_PROFILE=default: off.
settings.register_profile("aiomesos", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "aiomesos"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root for cgroups")
        for item in items:
            if "cgroups" in item.keywords:
                item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        # A pytest-xdist worker's base temp dir is one level down in its controller's (BASETEMP/popen-gwN), which
        # pytest made 0700 before the worker started: open that one too, as `traversable` opens the worker's.
        if config.option.basetemp is not None:
            _make_traversable(Path(config.option.basetemp).parent)
        return
    if config.option.basetemp is not None:
        return  # given on the command line
    root = _traversable_root()
    if root is not None:
        _prune(root)
        config.option.basetemp = str(root / f"pytest-{os.getpid()}")


def _traversable_root() -> Path | None:
    """`/tmp/aiomesos-pytest-of-USER`, 0711, checked to be ours (not a link someone else planted); None when it
    cannot be (pytest's default is used then)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    root = Path(tempfile.gettempdir()) / f"aiomesos-pytest-of-{user}"
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=TRAVERSABLE)
    st = root.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return None
    os.chmod(root, TRAVERSABLE)
    return root


def _prune(root: Path) -> None:
    """Remove the base temp dirs of finished sessions but the newest KEEP_SESSIONS."""
    sessions = []
    for path in root.glob("pytest-*"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(path.name.removeprefix("pytest-"))
            sessions.append((path.stat().st_mtime, pid, path))
    sessions.sort(reverse=True)
    for _, pid, path in sessions[KEEP_SESSIONS:]:
        if not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture
def tmp_path(tmp_path: Path) -> Path:
    """pytest's `tmp_path`, traversable (with the session's base temp dir) by the users tasks run as."""
    return traversable(tmp_path)


def traversable(path: Path) -> Path:
    """`path` and its parent (a test's or a module's temp dir, and the session's base temp dir) made traversable
    by the users tasks run as."""
    for p in (path.parent, path):
        _make_traversable(p)
    return path


def _make_traversable(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o011 != 0o011:
        os.chmod(path, mode | 0o011)


def module_tmp_path(factory: pytest.TempPathFactory, name: str) -> Path:
    """A temp dir for a module-scoped fixture, traversable as `tmp_path` is."""
    return traversable(factory.mktemp(name))


# etcd (Debian's etcd-server), for the HA masters' parts: one etcd per test module for the tests that leave it
# running (each works under a prefix of its own; per module, not per session, so that no etcd outlives the module
# that wanted it: tests check that the test process has no children left), and etcds of a test's own for tests
# that stop, kill or restart it. A test directory may override `etcd_certs` to have its etcds trust another CA.


@pytest.fixture(scope="session")
def etcd_certs(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificates:
    return LocalCertificates(tmp_path_factory.mktemp("etcd-certs"))


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory, etcd_certs: LocalCertificates) -> Iterator[LocalEtcd]:
    server = LocalEtcd(tmp_path_factory.mktemp("etcd"), etcd_certs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def etcd_prefix() -> str:
    return f"/test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def etcd_client(etcd_server: LocalEtcd) -> AsyncIterator[EtcdClient]:
    """A client of the session's etcd with a master's certificate."""
    client = EtcdClient(etcd_server.endpoints, tls=etcd_server.client_tls("etcd-test", "master"))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def local_etcd(tmp_path: Path, etcd_certs: LocalCertificates) -> Iterator[Callable[[], LocalEtcd]]:
    """Starts an etcd of the test's own on each call; every one is stopped after the test, passed or failed."""
    started: list[LocalEtcd] = []

    def start() -> LocalEtcd:
        server = LocalEtcd(tmp_path / f"etcd-{len(started)}", etcd_certs)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def dead_port() -> Iterator[Callable[[], int]]:
    """Makes loopback ports that refuse connections (bound, never listening) and stay so until the test ends: a
    port bound and released could be taken meanwhile by a daemon of another test (another pytest worker's, all
    binding port 0), which would answer."""
    held: list[socket.socket] = []

    def make() -> int:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.append(s)
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

    try:
        yield make
    finally:
        for s in held:
            s.close()
