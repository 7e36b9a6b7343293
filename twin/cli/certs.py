"""`twin certs`: a development CA and a server certificate for serving the API and dashboard with TLS."""

from __future__ import annotations

import argparse
from pathlib import Path

from twin.cli.base import Command, console
from twin.services.bootstrap import make_certs


class CertsCommand(Command):
    name = "certs"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", default=".twin/certs")
        parser.add_argument("--hosts", default="localhost,127.0.0.1", help="names and addresses the certificate covers")

    def run(self, args: argparse.Namespace) -> int:
        ca, cert, key = make_certs(Path(args.out), args.hosts.split(","))
        console.print(f"CA {ca}\nserver certificate {cert}\nserver key {key}", highlight=False)
        return 0
