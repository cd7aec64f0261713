"""One real etcd (Debian's etcd-server, /usr/bin/etcd) on free loopback ports, for tests, `LocalCluster` and
`make run`: TLS with client-certificate auth, its server certificate issued by the cluster's CA (role `etcd`), so
that only holders of a certificate from that CA may talk to it. Without certificates (a cluster run with
--insecure) it serves plain http.

A one-member cluster with short raft timings (it elects itself at once). Its data dir and log (`etcd.log`) are in
the directory given; `restart` keeps both and the ports. The process is its own session (a signal to the test's
process group does not reach it); whoever starts it stops it (`stop`, or the context manager)."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

from scheduler_sdk.etcd import EtcdTLS
from scheduler_sdk.masters import DEFAULT_PREFIX
from scheduler_sdk.security.local import LocalCertificates

ETCD_BINARY = Path("/usr/bin/etcd")
LOG_FILE = "etcd.log"
HEARTBEAT_MS = 50
ELECTION_MS = 500


class LocalEtcdError(RuntimeError):
    """etcd would not start or become healthy; the message says why, with the tail of its log."""


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports free now (each socket is held until all are chosen: one after another, the
    kernel could hand out the same port twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


class LocalEtcd:
    def __init__(
        self,
        data_dir: Path,
        certs: LocalCertificates | None,
        *,
        name: str = "local",
        prefix: str = DEFAULT_PREFIX,
        binary: Path = ETCD_BINARY,
    ) -> None:
        self.data_dir = data_dir
        self.certs = certs
        self.name = name
        self.prefix = prefix
        self.binary = binary
        self.client_port = 0
        self.peer_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{self.client_port}"]

    @property
    def url(self) -> str:
        """`etcd://127.0.0.1:PORT/aiomesos` (TLS); `http://...` when it serves plaintext."""
        scheme = "etcd" if self.certs is not None else "http"
        return f"{scheme}://{','.join(self.endpoints)}{self.prefix}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client_tls(self, name: str, role: str) -> EtcdTLS:
        """TLS material for a client of this etcd: a certificate for ROLE/NAME from the cluster's CA."""
        if self.certs is None:
            raise LocalEtcdError("this etcd serves plaintext: it has no TLS for its clients")
        cert, key = self.certs.issue(name, role)
        return EtcdTLS(ca=self.certs.ca_cert.read_bytes(), cert=cert.read_bytes(), key=key.read_bytes())

    def _argv(self) -> list[str]:
        scheme = "https" if self.certs is not None else "http"
        client_url = f"{scheme}://127.0.0.1:{self.client_port}"
        peer_url = f"http://127.0.0.1:{self.peer_port}"  # one member on loopback: no peer traffic leaves the host
        argv = [
            str(self.binary),
            f"--name={self.name}",
            f"--data-dir={self.data_dir / 'data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster={self.name}={peer_url}",
            "--initial-cluster-state=new",
            f"--heartbeat-interval={HEARTBEAT_MS}",
            f"--election-timeout={ELECTION_MS}",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        if self.certs is not None:
            cert, key = self.certs.issue(self.name, "etcd")
            argv += [
                f"--cert-file={cert}",
                f"--key-file={key}",
                "--client-cert-auth",
                f"--trusted-ca-file={self.certs.ca_cert}",
            ]
        return argv

    def start(self, timeout: float = 20.0) -> None:
        """Start etcd (on the ports of its last run, if it ran) and wait until it says it is healthy."""
        if self.alive:
            return
        if not self.binary.exists():
            raise LocalEtcdError(
                f"{self.binary} is missing: install Debian's etcd-server (apt-get install etcd-server)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.client_port:
            self.client_port, self.peer_port = free_ports(2)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child from here on
        try:
            self.process = subprocess.Popen(
                self._argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        why = "no answer yet"
        while time.monotonic() < deadline:
            if not self.alive:
                assert self.process is not None
                raise LocalEtcdError(f"etcd exited with {self.process.returncode}: {self.log_tail()}")
            why = self._health()
            if not why:
                return
            time.sleep(0.05)
        raise LocalEtcdError(f"etcd on port {self.client_port} not healthy in {timeout}s ({why}): {self.log_tail()}")

    def _health(self) -> str:
        """'' when etcd answers /health with {"health":"true"}, else why not."""
        connection: http.client.HTTPConnection
        if self.certs is not None:
            context = ssl.create_default_context(cafile=str(self.certs.ca_cert))
            cert, key = self.certs.issue(self.name, "etcd")
            context.load_cert_chain(str(cert), str(key))
            connection = http.client.HTTPSConnection("127.0.0.1", self.client_port, timeout=1.0, context=context)
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=1.0)
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            return f"{type(e).__name__}: {e}"
        finally:
            connection.close()
        return "" if response.status == 200 and b'"true"' in body else f"{response.status} {body[:100]!r}"

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed that etcd had not already made durable."""
        self._signal(signal.SIGKILL)
        self._reap(10.0)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not ended within `timeout`."""
        self._signal(signal.SIGTERM)
        if not self._reap(timeout):
            self.kill()

    def restart(self, timeout: float = 20.0) -> None:
        """Stop and start again: the same ports, the same data."""
        self.stop()
        self.start(timeout)

    def _signal(self, sig: int) -> None:
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)

    def _reap(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def log_tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def __enter__(self) -> LocalEtcd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
