"""A cluster's certificate authority and the certificates it issues (ECDSA P-256, X.509 v3).

`CertificateAuthority.create(DIR)` writes `ca.crt` and `ca.key` (the key readable by its owner only);
`CertificateAuthority.load(DIR)` reads them back; `issue(name, role, hosts=...)` makes a key and a certificate for
one principal. A certificate is good for both ends of a TLS connection (server and client auth), so an agent's
one certificate serves its own gRPC port and its connection to the master."""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from scheduler_sdk.security._files import write_private

ROLES = ("master", "agent", "framework", "operator")
#: Roles of servers we call but which never call us (etcd): the CA issues them certificates, but no principal of
#: ours has such a role (`Principal.parse`, `principal_of_certificate` and the ACLs know only ROLES).
SERVER_ROLES = ("etcd",)
URI_SCHEME = "aiomesos"
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
# A principal's name: what ids are made of elsewhere too (letters, digits, . _ -), at most 255 characters.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
#: The name every master certificate carries besides its hosts; clients of the master check for it.
MASTER_SERVER_NAME = "master.aiomesos"
_CA_DAYS = 3650
_CERT_DAYS = 825


class SecurityError(Exception):
    """Bad security material or input: the message is one readable line."""


@dataclass(frozen=True, order=True)
class Principal:
    """Who is calling: a name and the kind of party it is."""

    role: str
    name: str

    def __str__(self) -> str:
        return f"{self.role}/{self.name}"

    @property
    def uri(self) -> str:
        return f"{URI_SCHEME}://{self.role}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> Principal | None:
        """`ROLE/NAME` (as `str()` writes it) back to a principal; None for anything else."""
        role, _, name = text.partition("/")
        try:
            return check_principal(name, role)
        except SecurityError:
            return None


def check_principal(name: str, role: str, roles: tuple[str, ...] = ROLES) -> Principal:
    if role not in roles:
        raise SecurityError(f"role {role!r} is not one of {', '.join(roles)}")
    if not NAME_PATTERN.fullmatch(name):
        raise SecurityError(
            f"principal name {name[:64]!r} must be 1-255 letters, digits, '.', '_' or '-' (first a letter or digit)"
        )
    return Principal(role, name)


@dataclass(frozen=True)
class IssuedCertificate:
    principal: Principal
    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: Path, stem: str | None = None) -> tuple[Path, Path]:
        """Write STEM.crt and STEM.key (owner-only) into `directory`; returns their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        stem = stem or self.principal.name
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        write_private(key_path, self.key_pem)
        cert_path.write_bytes(self.cert_pem)
        return cert_path, key_path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class CertificateAuthority:
    """The cluster's CA: its certificate (what every party trusts) and, where certificates are issued, its key."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> None:
        self.cert = cert
        self.key = key

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def create(cls, directory: Path, name: str = "aiomesos cluster CA") -> CertificateAuthority:
        """A new CA in `directory` (ca.crt, ca.key); refuses to overwrite one that is there."""
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / CA_KEY).exists() or (directory / CA_CERT).exists():
            raise SecurityError(f"{directory} already holds a CA ({CA_CERT}/{CA_KEY}): remove it or use another dir")
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca = cls(cert, key)
        write_private(directory / CA_KEY, _key_pem(key))
        (directory / CA_CERT).write_bytes(ca.cert_pem)
        return ca

    @classmethod
    def load(cls, directory: Path, *, with_key: bool = True) -> CertificateAuthority:
        cert_path, key_path = directory / CA_CERT, directory / CA_KEY
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except FileNotFoundError:
            raise SecurityError(f"no CA in {directory} ({CA_CERT} is missing): run `aiomesos certs init`") from None
        except ValueError as e:
            raise SecurityError(f"{cert_path} is not a PEM certificate: {e}") from None
        key = None
        if with_key:
            try:
                loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            except FileNotFoundError:
                raise SecurityError(f"{key_path} is missing: certificates are issued where the CA key is") from None
            except (ValueError, TypeError) as e:
                raise SecurityError(f"{key_path} is not an unencrypted PEM key: {e}") from None
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise SecurityError(f"{key_path} is not an EC key")
            key = loaded
        return cls(cert, key)

    def issue(
        self, name: str, role: str, *, hosts: tuple[str, ...] = ("localhost", "127.0.0.1"), days: int = _CERT_DAYS
    ) -> IssuedCertificate:
        """A key and a certificate naming principal ROLE/NAME, valid for the given host names and addresses."""
        if self.key is None:
            raise SecurityError("this CA was loaded without its key: it cannot issue certificates")
        principal = check_principal(name, role, ROLES + SERVER_ROLES)
        key = ec.generate_private_key(ec.SECP256R1())
        alt_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(principal.uri)]
        if role == "master":  # what the master's clients check (security.tls.MASTER_SERVER_NAME)
            alt_names.append(x509.DNSName(MASTER_SERVER_NAME))
        for host in hosts:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt_names.append(x509.DNSName(host))
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, name[:64]),
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCertificate(principal, cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def principal_of_certificate(cert_pem: bytes) -> Principal | None:
    """The principal a (CA-verified) certificate names through its aiomesos:// URI, or None if it names none."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        alt_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    for uri in alt_names.get_values_for_type(x509.UniformResourceIdentifier):
        scheme, sep, rest = uri.partition("://")
        role, slash, name = rest.partition("/")
        if scheme == URI_SCHEME and sep and slash and role in ROLES and NAME_PATTERN.fullmatch(name):
            return Principal(role, name)
    return None
