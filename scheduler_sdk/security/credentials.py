"""Bearer-token credentials: the master's file of principals and the SHA-256 of each one's token.

The file is TOML, one `[[principal]]` table each (`name`, `role`, `token_sha256`): the master never stores a
token itself, so a copy of the file lets no one in. `Credentials.reload()` reads it again when it changed (the
master calls it on SIGHUP and before it authenticates an unknown token), so revoking a token is an edit, with
no restart."""

from __future__ import annotations

import hashlib
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from scheduler_sdk.security._files import WatchedFile, write_private
from scheduler_sdk.security.certs import Principal, SecurityError, check_principal

TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_credentials(text: str, source: str = "credentials") -> dict[str, Principal]:
    """token hash -> principal; raises SecurityError naming the entry that is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SecurityError(f"{source}: not TOML: {e}") from None
    unknown = set(data) - {"principal"}
    if unknown:
        raise SecurityError(f"{source}: unknown key {sorted(unknown)[0]!r} (only [[principal]] tables)")
    entries = data.get("principal", [])
    if not isinstance(entries, list):
        raise SecurityError(f"{source}: 'principal' must be an array of tables ([[principal]])")
    by_hash: dict[str, Principal] = {}
    for i, entry in enumerate(entries):
        where = f"{source}: principal #{i + 1}"
        if not isinstance(entry, dict) or set(entry) != {"name", "role", "token_sha256"}:
            raise SecurityError(f"{where} must have exactly name, role and token_sha256")
        if not all(isinstance(v, str) for v in entry.values()):
            raise SecurityError(f"{where}: name, role and token_sha256 are strings")
        try:
            principal = check_principal(entry["name"], entry["role"])
        except SecurityError as e:
            raise SecurityError(f"{where}: {e}") from None
        digest = entry["token_sha256"].lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise SecurityError(f"{where}: token_sha256 is not a SHA-256 hex digest")
        if digest in by_hash:
            raise SecurityError(f"{where}: the same token as {by_hash[digest]}")
        by_hash[digest] = principal
    return by_hash


def render_credentials(by_hash: dict[str, Principal]) -> str:
    lines = ["# aiomesos credentials: SHA-256 hashes of bearer tokens, never the tokens themselves.", ""]
    for digest, principal in sorted(by_hash.items(), key=lambda item: (item[1], item[0])):
        lines += [
            "[[principal]]",
            f'name = "{principal.name}"',
            f'role = "{principal.role}"',
            f'token_sha256 = "{digest}"',
            "",
        ]
    return "\n".join(lines)


@dataclass
class Credentials:
    """The principals a master knows by token, kept in step with their file."""

    path: Path | None = None
    _by_hash: dict[str, Principal] = field(default_factory=dict)
    _file: WatchedFile | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.path is not None:
            self._file = WatchedFile(self.path, "credentials file", SecurityError)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        credentials = cls(path)
        credentials.reload(force=True)
        return credentials

    def reload(self, *, force: bool = False) -> bool:
        """Read the file again if it changed; returns whether it did. A broken file keeps the old principals."""
        by_hash = self._file.read_if_changed(parse_credentials, force=force) if self._file is not None else None
        if by_hash is None:
            return False
        self._by_hash = by_hash
        return True

    def authenticate(self, token: str) -> Principal | None:
        return self._by_hash.get(hash_token(token))


def add_token(path: Path, name: str, role: str) -> str:
    """Make a token for ROLE/NAME, record its hash in the credentials file at `path`; returns the token."""
    principal = check_principal(name, role)
    by_hash = parse_credentials(path.read_text(), str(path)) if path.exists() else {}
    token = new_token()
    by_hash[hash_token(token)] = principal
    write_private(path, render_credentials(by_hash).encode())
    return token


def revoke(path: Path, name: str, role: str) -> int:
    """Remove every token of ROLE/NAME from the credentials file; returns how many were removed."""
    principal = check_principal(name, role)
    by_hash = parse_credentials(path.read_text(), str(path))
    kept = {digest: p for digest, p in by_hash.items() if p != principal}
    write_private(path, render_credentials(kept).encode())
    return len(by_hash) - len(kept)
