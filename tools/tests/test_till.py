"""The money commands a person types: ``bandlink token create`` and ``bandlink till charge``
(against a real gateway: hil-tests/test_pay.py and the demo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bandlink.gateway.http.auth import digest
from bandlink.gateway.store import Store
from bandlink.tools.cli import main


def test_a_token_is_printed_once_and_only_its_hash_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'gw.db'}"
    assert main(["token", "create", "--role", "till", "--outlet", "cafe", "--db", db]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("blt_") and len(secret) > 40
    store = Store(db)
    try:
        token = store.token(digest(secret))
        assert token is not None and (token.role, token.outlet) == ("till", "cafe")
        assert store.token(digest(secret + "x")) is None
    finally:
        store.close()
    assert secret not in (tmp_path / "gw.db").read_bytes().decode(errors="replace")


@pytest.mark.parametrize(
    "args",
    [
        ["--role", "till"],  # a till belongs to an outlet
        ["--role", "desk", "--outlet", "cafe"],  # only a till does
    ],
)
def test_a_token_that_makes_no_sense_is_refused(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'gw.db'}"
    assert main(["token", "create", *args, "--db", db]) == 2
    assert "outlet" in capsys.readouterr().err


def test_till_charge_refuses_an_amount_before_calling_anyone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["till", "charge", "--reader", "pos-1", "--token", "t", "--url", "http://127.0.0.1:9"]
    assert main([*args, "--amount", "4.505"]) == 2
    assert "2 decimal places" in capsys.readouterr().err
    assert main([*args, "--amount", "-3"]) == 2
