"""The cluster CA, issued certificates, token credentials and the client config file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from scheduler_sdk.security import (
    CertificateAuthority,
    ClientConfig,
    Credentials,
    Principal,
    SecurityError,
    find_client_config,
    hash_token,
    principal_of_certificate,
)
from scheduler_sdk.security.credentials import add_token, revoke


def test_ca_issues_certificates_that_name_the_principal_and_verify(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca")
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    issued = ca.issue("host-1", "agent", hosts=("localhost", "127.0.0.1", "host-1.example"))
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    cert.verify_directly_issued_by(ca.cert)  # raises when the signature or issuer is wrong
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == ["localhost", "host-1.example"]
    assert [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert principal_of_certificate(issued.cert_pem) == Principal("agent", "host-1")
    cert_path, key_path = issued.write(tmp_path / "out")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert cert_path.read_bytes() == issued.cert_pem


def test_a_reloaded_ca_keeps_issuing_and_a_second_one_is_refused(tmp_path: Path) -> None:
    first = CertificateAuthority.create(tmp_path)
    with pytest.raises(SecurityError, match="already holds a CA"):
        CertificateAuthority.create(tmp_path)
    again = CertificateAuthority.load(tmp_path)
    assert again.cert == first.cert
    x509.load_pem_x509_certificate(again.issue("ops", "operator").cert_pem).verify_directly_issued_by(first.cert)
    public_only = CertificateAuthority.load(tmp_path, with_key=False)
    with pytest.raises(SecurityError, match="without its key"):
        public_only.issue("ops", "operator")


@pytest.mark.parametrize(
    ("name", "role", "message"),
    [
        ("ops", "root", "role 'root'"),
        ("", "agent", "principal name"),
        ("a/b", "agent", "principal name"),
        ("x" * 256, "framework", "principal name"),
    ],
)
def test_bad_principals_are_refused(tmp_path: Path, name: str, role: str, message: str) -> None:
    ca = CertificateAuthority.create(tmp_path)
    with pytest.raises(SecurityError, match=message):
        ca.issue(name, role)


def test_a_certificate_without_our_uri_names_no_principal(tmp_path: Path) -> None:
    assert principal_of_certificate(b"not a certificate") is None
    ca = CertificateAuthority.create(tmp_path)
    assert principal_of_certificate(ca.cert_pem) is None  # the CA's own: no aiomesos:// URI


def test_tokens_are_stored_hashed_and_revocable_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    token = add_token(path, "ml-team", "framework")
    ops = add_token(path, "ops", "operator")
    assert token not in path.read_text() and hash_token(token) in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    credentials = Credentials.load(path)
    assert credentials.authenticate(token) == Principal("framework", "ml-team")
    assert credentials.authenticate(ops) == Principal("operator", "ops")
    assert credentials.authenticate("guess") is None
    assert revoke(path, "ml-team", "framework") == 1
    assert credentials.reload() is True
    assert credentials.authenticate(token) is None
    assert credentials.authenticate(ops) == Principal("operator", "ops")
    assert credentials.reload() is False  # unchanged: not read again


def test_a_broken_credentials_file_names_the_entry_and_keeps_the_old_principals(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    token = add_token(path, "ops", "operator")
    credentials = Credentials.load(path)
    path.write_text('[[principal]]\nname = "x"\nrole = "king"\ntoken_sha256 = "' + "0" * 64 + '"\n')
    with pytest.raises(SecurityError, match="principal #1: role 'king'"):
        credentials.reload()
    assert credentials.authenticate(token) == Principal("operator", "ops")
    path.write_text("[[principal]]\nname = 'x'\n")
    with pytest.raises(SecurityError, match="exactly name, role and token_sha256"):
        Credentials.load(path)


def test_client_config_round_trips_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    config = ClientConfig(master="127.0.0.1:5050", ca=tmp_path / "certs" / "ca.crt", token="t0k")
    path = tmp_path / "aiomesos.toml"
    config.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ClientConfig.load(path) == config
    path.write_text('master = "m:1"\nca = "certs/ca.crt"\ncert = "c.crt"\nkey = "c.key"\n')
    loaded = ClientConfig.load(path)
    assert loaded.ca == (tmp_path / "certs" / "ca.crt").resolve() and loaded.cert == (tmp_path / "c.crt").resolve()
    assert loaded.secure


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("master = 5050\n", "master must be a non-empty string"),
        ("colour = 'red'\n", "unknown key 'colour'"),
        ("cert = 'c'\n", "cert and key go together"),
        ("= broken", "not TOML"),
    ],
)
def test_bad_client_configs_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "aiomesos.toml"
    path.write_text(text)
    with pytest.raises(SecurityError, match=message):
        ClientConfig.load(path)


def test_the_config_is_found_as_kubectl_finds_its_kubeconfig(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"HOME": str(home)}
    assert find_client_config(None, env) is None
    default = home / ".config" / "aiomesos" / "config.toml"
    default.parent.mkdir(parents=True)
    default.write_text('master = "a:1"\n')
    assert find_client_config(None, env) == default
    chosen = tmp_path / "other.toml"
    chosen.write_text('master = "b:1"\n')
    assert find_client_config(None, {**env, "AIOMESOS_CONFIG": str(chosen)}) == chosen
    assert find_client_config(str(chosen), {**env, "AIOMESOS_CONFIG": "/nonexistent"}) == chosen
    with pytest.raises(SecurityError, match="AIOMESOS_CONFIG: no config file"):
        find_client_config(None, {**env, "AIOMESOS_CONFIG": str(tmp_path / "missing.toml")})
