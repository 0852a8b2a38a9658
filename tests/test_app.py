"""The app's command line: loopback by default, --auth required elsewhere."""

from __future__ import annotations

import pytest

import app


def test_loopback_needs_no_auth():
    assert app.parse_args([]).host == "127.0.0.1"
    assert app.parse_args(["--host", "localhost"]).auth is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "example.org"])
def test_other_hosts_need_auth(host, capsys):
    with pytest.raises(SystemExit):
        app.parse_args(["--host", host])
    assert "--auth" in capsys.readouterr().err
    assert app.parse_args(["--host", host, "--auth", "ann:secret"]).auth == "ann:secret"


def test_auth_must_be_user_and_password():
    with pytest.raises(SystemExit):
        app.parse_args(["--host", "0.0.0.0", "--auth", "nopassword"])
