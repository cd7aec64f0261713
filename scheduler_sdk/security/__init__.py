"""Security for aiomesos: a cluster's own certificate authority, the certificates and bearer tokens that name
its principals, and the client config file (`aiomesos.toml`) that the CLI and the SDK read, as kubectl reads a
kubeconfig.

Every principal has a *role*, which says what kind of party it is: the `master`, an `agent`, a `framework` or an
`operator`. Certificates carry the principal's name as their common name and its role and name as a URI
(`aiomesos://ROLE/NAME`), so the master and the agents learn both from the TLS handshake alone."""

from scheduler_sdk.security.certs import (
    ROLES,
    CertificateAuthority,
    IssuedCertificate,
    Principal,
    SecurityError,
    principal_of_certificate,
)
from scheduler_sdk.security.config import ClientConfig, find_client_config
from scheduler_sdk.security.credentials import Credentials, hash_token, new_token

__all__ = [
    "ROLES",
    "CertificateAuthority",
    "ClientConfig",
    "Credentials",
    "IssuedCertificate",
    "Principal",
    "SecurityError",
    "find_client_config",
    "hash_token",
    "new_token",
    "principal_of_certificate",
]
