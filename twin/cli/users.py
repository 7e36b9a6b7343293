"""`twin users`: list the DCC Users of a twin's home, or add one (its token is shown once)."""

from __future__ import annotations

import argparse
from pathlib import Path

from twin.cli.base import Command, UsageError, console
from twin.services.bootstrap import load_or_create_users
from twin.util.grammar import GrammarError, parse_decimal, shown


class UsersCommand(Command):
    name = "users"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("action", choices=("list", "add"))
        parser.add_argument("user_id", nargs="?")
        parser.add_argument("--role", help="IS, ES, GS, ED, GT, RSA, OU or OPERATOR")
        parser.add_argument("--party", default="0", help="supplier code (1-16) or DNO area id (10-23)")
        parser.add_argument("--home", default=".twin")

    def run(self, args: argparse.Namespace) -> int:
        home = Path(args.home)
        party = 0
        if args.action == "add":
            # Checked before the user store is read (or created).
            if not args.user_id or not args.role:
                raise UsageError("users add needs USER_ID and --role")
            try:
                party = parse_decimal(args.party)
            except GrammarError:
                raise UsageError(f"--party: expected a supplier code (1-16) or a DNO area id (10-23), "
                                 f"got {shown(args.party)}") from None
        store, _tokens = load_or_create_users(home)
        if args.action == "list":
            for u in store.users():
                console.print(f"{u.user_id:20} {u.role:9} party {u.party_id}", highlight=False)
            return 0
        try:
            identity, token, key = store.issue_user(args.user_id, args.role.upper(), party, keys_dir=home / "keys")
        except ValueError as e:
            raise UsageError(str(e)) from None
        store.save(home / "users.json")
        console.print(f"user {identity.user_id} ({identity.role}, party {identity.party_id}); signing key {key}")
        console.print(f"token (shown once): {token}", highlight=False)
        return 0
