"""`aiomesos certs`: a cluster's CA, its principals' certificates and tokens, for a real deployment.

aiomesos certs init DIR                                   a new CA in DIR (ca.crt, ca.key)
aiomesos certs issue NAME --role agent --dir DIR [--host H ...]   DIR/NAME.crt and DIR/NAME.key
aiomesos certs token NAME --role operator --credentials FILE      prints a new token; FILE keeps its hash
aiomesos certs revoke NAME --role operator --credentials FILE     removes that principal's tokens
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from scheduler_sdk._daemon.flags import UsageError
from scheduler_sdk.security import ROLES, CertificateAuthority, SecurityError
from scheduler_sdk.security.credentials import add_token, revoke


def add_parsers(sub: Any) -> None:
    certs = sub.add_parser("certs", help="make the cluster CA, certificates and tokens")
    actions = certs.add_subparsers(dest="certs_action", metavar="ACTION")
    actions.required = True
    init = actions.add_parser("init", help="create a certificate authority in DIR")
    init.add_argument("dir", type=Path)
    issue = actions.add_parser("issue", help="issue a certificate and key for a principal")
    issue.add_argument("name", help="the principal's name (an agent's host name, a team, a person)")
    issue.add_argument("--role", required=True, choices=ROLES, help="what kind of party it is")
    issue.add_argument("--dir", type=Path, required=True, help="the CA's directory; NAME.crt/NAME.key go there")
    issue.add_argument("--out", type=Path, default=None, help="write NAME.crt/NAME.key here instead of --dir")
    issue.add_argument(
        "--host",
        action="append",
        default=[],
        help="a host name or address the certificate is good for (repeatable; default localhost and 127.0.0.1)",
    )
    for name, what in (("token", "make a bearer token (printed once)"), ("revoke", "remove a principal's tokens")):
        sp = actions.add_parser(name, help=what)
        sp.add_argument("name")
        sp.add_argument("--role", required=True, choices=("framework", "operator"))
        sp.add_argument("--credentials", type=Path, required=True, help="the master's credentials file")


async def cmd_certs(args: argparse.Namespace) -> int:
    try:
        if args.certs_action == "init":
            CertificateAuthority.create(args.dir)
            print(f"created a certificate authority in {args.dir} (keep ca.key secret)")
        elif args.certs_action == "issue":
            ca = CertificateAuthority.load(args.dir)
            hosts = tuple(args.host) or ("localhost", "127.0.0.1")
            cert, key = ca.issue(args.name, args.role, hosts=hosts).write(args.out or args.dir)
            print(f"{args.role}/{args.name}: {cert} and {key}")
        elif args.certs_action == "token":
            print(add_token(args.credentials, args.name, args.role))
        else:
            removed = revoke(args.credentials, args.name, args.role)
            if not removed:
                raise UsageError(f"{args.role}/{args.name} has no token in {args.credentials}")
            print(f"revoked {removed} token(s) of {args.role}/{args.name}")
    except SecurityError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"{e.filename or ''}: {e.strerror}") from None
    return 0


COMMANDS = {"certs": cmd_certs}
