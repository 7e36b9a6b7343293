"""`twin duis-pki`: issue the DUIS test PKI (a CA, the twin's own signing credential, and a key and
organisation certificate per DCC User of a twin's home) and set Users' receive URLs."""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit

from twin.cli.base import Command, UsageError, console
from twin.services.bootstrap import load_or_create_users


class DuisPkiCommand(Command):
    name = "duis-pki"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--home", default=".twin", help="the twin's home, whose DCC Users get keys (default .twin)")
        parser.add_argument("--out", help="where the PKI goes (default HOME/duis); re-running keeps existing keys")
        parser.add_argument("--receive-url", action="append", default=[], metavar="USER=URL",
                            help="the URL where the twin POSTs a User's device responses and alerts (http only to "
                                 "loopback; https beyond it); repeat for more Users")

    def run(self, args: argparse.Namespace) -> int:
        from twin.services.duis_gateway.delivery import Receivers
        from twin.services.duis_gateway.pki import Pki, issue, set_receive_url
        from twin.services.identity import OPERATOR

        receive: dict[str, str] = {}
        for item in args.receive_url:
            user, sep, url = item.partition("=")
            if not sep or not user or not url:
                raise UsageError(f"--receive-url: expected USER=URL, got {item!r}")
            try:
                # Its host is allowed at `twin up` by --duis-receiver-host; here the URL's form is checked.
                Receivers(allowed_hosts=[urlsplit(url).hostname or ""]).validate(url)
            except ValueError as e:
                raise UsageError(f"--receive-url {user}: {e}") from None
            receive[user] = url
        home = Path(args.home)
        store, _tokens = load_or_create_users(home)
        users = [u.user_id for u in store.users() if u.role != OPERATOR]
        unknown = sorted(set(receive) - set(users))
        if unknown:
            raise UsageError(f"--receive-url: no DCC User {', '.join(unknown)} in {home} (twin users list)")
        out = Path(args.out) if args.out else home / "duis"
        manifest = issue(out, users)
        for user, url in receive.items():
            set_receive_url(manifest, user, url)
        pki = Pki.load(manifest)
        console.print(f"DUIS test PKI in {out} (manifest {manifest}); the twin signs as EUI {pki.dcc.eui}", highlight=False)
        for p in pki.parties():
            if p.user_id == pki.dcc.user_id:
                continue
            console.print(f"  {p.user_id:20} EUI {p.eui}  key {p.key_path}  receive URL {p.receive_url or '-'}",
                          highlight=False)
        return 0
