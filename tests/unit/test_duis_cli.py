"""`twin duis-pki` and `twin up`'s DUIS options: the PKI issued for a home's DCC Users (operators
left out), receive URLs set and checked, bad options refused naming the option (exit 2)."""

from __future__ import annotations

import json

import pytest

from twin.cli import main
from twin.services.duis_gateway.pki import Pki


def test_duis_pki_issues_for_the_homes_dcc_users_and_sets_receive_urls(tmp_path, capsys):
    home = tmp_path / "home"
    url = "http://127.0.0.1:9000/smartdcc/duis"
    assert main(["duis-pki", "--home", str(home), "--receive-url", f"ukpn-london-ed={url}"]) == 0
    out = capsys.readouterr().out
    pki = Pki.load(home / "duis" / "duis.json")
    users = json.loads((home / "users.json").read_text())
    dcc_users = sorted(u["user_id"] for u in users["users"] if u["role"] != "OPERATOR")
    assert sorted(pki.users) == dcc_users  # every DCC User, no operator
    assert pki.by_user("ukpn-london-ed").receive_url == "http://127.0.0.1:9000/smartdcc/duis"
    assert all(p.receive_url is None for name, p in pki.users.items() if name != "ukpn-london-ed")
    assert f"EUI {pki.by_user('ukpn-london-ed').eui}" in out
    key = pki.by_user("ukpn-london-ed").key_path.read_bytes()
    assert main(["duis-pki", "--home", str(home)]) == 0  # again: the same keys and URLs
    again = Pki.load(home / "duis" / "duis.json")
    assert again.by_user("ukpn-london-ed").key_path.read_bytes() == key
    assert again.by_user("ukpn-london-ed").receive_url == "http://127.0.0.1:9000/smartdcc/duis"


@pytest.mark.parametrize(("url", "needle"), [
    ("ukpn-london-ed=http://198.51.100.7/smartdcc/duis", "loopback"),  # plain HTTP beyond loopback
    ("ukpn-london-ed=ftp://127.0.0.1/x", "--receive-url ukpn-london-ed"),
    ("ukpn-london-ed=https://user:pw@example.com/x", "--receive-url ukpn-london-ed"),
    ("nobody=http://127.0.0.1:9000/x", "no DCC User nobody"),
    ("ukpn-london-ed", "USER=URL"),
    ("ukpn-london-ed=http://\u202e127.0.0.1/x", "--receive-url ukpn-london-ed"),
])
def test_duis_pki_refuses_a_bad_receive_url_naming_it(tmp_path, capsys, url, needle):
    assert main(["duis-pki", "--home", str(tmp_path / "home"), "--receive-url", url]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "home" / "duis" / "duis.json").exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["up", "--duis-port", "70000"], "--duis-port"),
    (["up", "--duis-port", "0", "--duis-host", "0.0.0.0"], "--duis-host"),
])
def test_twin_up_refuses_bad_duis_options_before_building(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
