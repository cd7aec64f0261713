"""`aiomesos certs`: init, issue, token, revoke; bad input is one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler_sdk.cli.main import main
from scheduler_sdk.security import Credentials, Principal, principal_of_certificate


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ended:
        main(argv)
    out, err = capsys.readouterr()
    return int(ended.value.code or 0), out, err


def test_certs_commands_make_a_working_ca_certificates_and_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = str(tmp_path / "ca")
    assert run(["certs", "init", ca], capsys)[0] == 0
    code, out, _ = run(["certs", "issue", "host-1", "--role", "agent", "--dir", ca, "--host", "10.1.2.3"], capsys)
    assert code == 0 and "agent/host-1" in out
    assert principal_of_certificate((tmp_path / "ca" / "host-1.crt").read_bytes()) == Principal("agent", "host-1")
    creds = str(tmp_path / "credentials.toml")
    code, token, _ = run(["certs", "token", "ops", "--role", "operator", "--credentials", creds], capsys)
    assert code == 0
    assert Credentials.load(Path(creds)).authenticate(token.strip()) == Principal("operator", "ops")
    assert run(["certs", "revoke", "ops", "--role", "operator", "--credentials", creds], capsys)[0] == 0
    assert Credentials.load(Path(creds)).authenticate(token.strip()) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["certs", "issue", "x", "--role", "agent", "--dir", "{tmp}/none"], "no CA in"),
        (["certs", "issue", "a b", "--role", "agent", "--dir", "{tmp}/ca"], "principal name 'a b'"),
        (["certs", "init", "{tmp}/ca"], "already holds a CA"),
        (["certs", "revoke", "ops", "--role", "operator", "--credentials", "{tmp}/missing.toml"], "missing.toml"),
    ],
)
def test_bad_certs_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(["certs", "init", str(tmp_path / "ca")], capsys)[0] == 0
    code, _, err = run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
