"""The `twin` command. Each command lives in a module of its own, imported only when it runs (pip's
command package), so `twin --help` is fast and no command imports another. COMMANDS is the table:
name -> (module, class, one-line summary); twin/cli/base.py owns what they share."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from twin.cli.base import Command


class CommandInfo(NamedTuple):
    module: str
    class_name: str
    summary: str


# In the order `twin --help` lists them.
COMMANDS: dict[str, CommandInfo] = {
    "up": CommandInfo("twin.cli.up", "UpCommand", "run the live twin (engine on local Ray) until Ctrl-C"),
    "run": CommandInfo("twin.cli.run", "RunCommand",
                       "run a scenario (or the plain fleet) headless and write its report"),
    "bench": CommandInfo("twin.cli.bench", "BenchCommand",
                         "measure build, tick and memory figures, or event costs"),
    "submit": CommandInfo("twin.cli.submit", "SubmitCommand", "run a scenario on a Ray cluster as a Ray job"),
    "sweep": CommandInfo("twin.cli.sweep", "SweepCommand",
                         "run a scenario at several values of one parameter, in parallel"),
    "users": CommandInfo("twin.cli.users", "UsersCommand", "list DCC Users, or add one (prints its token once)"),
    "certs": CommandInfo("twin.cli.certs", "CertsCommand", "make a development CA and server certificate for TLS"),
    "duis-pki": CommandInfo("twin.cli.duis", "DuisPkiCommand",
                            "issue the DUIS test PKI for a home's DCC Users and set their receive URLs"),
    "hub": CommandInfo("twin.cli.hub", "HubCommand", "describe one hub of a fleet at its start"),
    "history": CommandInfo("twin.cli.history", "HistoryCommand",
                           "query a run's tick-summary history (DuckDB SQL; takes no lock, so it is safe "
                           "during a run)"),
    "fork": CommandInfo("twin.cli.fork", "ForkCommand", "fork a what-if branch of a run from a past tick, and run it"),
    "compare": CommandInfo("twin.cli.compare", "CompareCommand",
                           "compare two runs (a run and its branch) side by side; writes a report"),
}


def create_command(name: str) -> Command:
    """The command called `name`, its module imported now (KeyError for an unknown name)."""
    info = COMMANDS[name]
    cls = getattr(importlib.import_module(info.module), info.class_name)
    return cls()


def build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, Command | None]:
    """The `twin` parser: every command listed with its summary, and the options of the one
    `argv` names (if any) declared by its module, the only command module imported."""
    parser = argparse.ArgumentParser(prog="twin", description="Digital twin of the GB smart metering fleet")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The top level takes no options of its own, so the first word that is not one names the command.
    wanted = next((a for a in argv if not a.startswith("-")), None)
    command = None
    for name, info in COMMANDS.items():
        sp = sub.add_parser(name, help=info.summary)
        if name == wanted:
            command = create_command(name)
            command.add_arguments(sp)
    return parser, command


def main(argv: Sequence[str] | None = None) -> int:
    """`twin ARGS`: parse, run the command, return its exit status (2 for a bad command line)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser, command = build_parser(args_in)
    args = parser.parse_args(args_in)  # exits 2 on an unknown command or option, 0 after --help
    assert command is not None  # argparse refused anything that names no command
    return command.main(args)
