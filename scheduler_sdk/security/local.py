"""The security material of a cluster on one machine (`aiomesos cluster up`, `demo`, the tests): a CA, one
certificate per daemon, an operator's certificate, an (initially empty) credentials file for bearer tokens,
and the client config that names them, all in one directory.

Certificates already there are used again, so a restarted daemon keeps its identity; the CA may live
elsewhere (`ca_dir`), so that several local clusters (a test session's) trust one CA and one client config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scheduler_sdk.security._files import write_private
from scheduler_sdk.security.certs import CA_CERT, CA_KEY, CertificateAuthority
from scheduler_sdk.security.config import ClientConfig

LOCAL_HOSTS = ("localhost", "127.0.0.1")
CREDENTIALS_FILE = "credentials.toml"
OPERATOR = "admin"


@dataclass
class LocalCertificates:
    directory: Path
    ca_dir: Path | None = None  # default: `directory` itself

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ca_dir = self.ca_dir or self.directory
        if (ca_dir / CA_CERT).exists() and (ca_dir / CA_KEY).exists():
            self.ca = CertificateAuthority.load(ca_dir)
        else:
            self.ca = CertificateAuthority.create(ca_dir)
        self.ca_cert = ca_dir / CA_CERT
        self.credentials = self.directory / CREDENTIALS_FILE
        if not self.credentials.exists():
            write_private(self.credentials, b"# bearer-token hashes: aiomesos certs token NAME --credentials FILE\n")

    def issue(self, name: str, role: str) -> tuple[Path, Path]:
        """ROLE-NAME.crt and .key in the directory (made now unless they are there)."""
        stem = f"{role}-{name}"
        cert, key = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        if not (cert.exists() and key.exists()):
            self.ca.issue(name, role, hosts=LOCAL_HOSTS).write(self.directory, stem)
        return cert, key

    def daemon_flags(self, name: str, role: str) -> list[str]:
        cert, key = self.issue(name, role)
        flags = ["--ca", str(self.ca_cert), "--cert", str(cert), "--key", str(key)]
        if role == "master":
            flags += ["--credentials", str(self.credentials)]
        return flags

    def client_config(self, master: str = "", name: str = OPERATOR, role: str = "operator") -> ClientConfig:
        cert, key = self.issue(name, role)
        return ClientConfig(master=master, ca=self.ca_cert, cert=cert, key=key)
