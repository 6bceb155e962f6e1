"""``bandlink staff add``: a person who logs in, their password shown once and kept hashed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bandlink.gateway.core.payments.pinhash import PinHasher
from bandlink.gateway.settings import DEVELOPMENT_SECRET_KEY
from bandlink.gateway.store import Store
from bandlink.tools.cli import main


def test_a_staff_member_gets_a_password_once_and_the_audit_log_says_who_added_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'gw.db'}"
    args = ["staff", "add", "--login", "maria", "--name", "Maria", "--role", "desk", "--db", db]
    assert main(args) == 0
    password = capsys.readouterr().out.strip()
    store = Store(db)
    member = store.staff_member("maria")
    assert member is not None and member.role == "desk"
    assert password not in member.password_hash
    hasher = PinHasher(DEVELOPMENT_SECRET_KEY.encode())
    assert hasher.verify(member.password_hash, "staff:maria", password)
    (entry,) = store.audit_since()
    assert (entry.actor, entry.action, entry.target) == ("cli", "staff add", "maria")
    assert main(args) == 2  # the login is taken
    assert "exists already" in capsys.readouterr().err
    store.close()


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--role", "till"], "outlet"),
        (["--role", "desk", "--password-stdin"], "at least 12"),
    ],
)
def test_what_staff_add_refuses(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    said: str,
) -> None:
    """A till without its outlet; a password typed too short (standard input: "short")."""
    db = f"sqlite:///{tmp_path / 'gw.db'}"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["staff", "add", "--login", "bo", "--name", "Bo", "--db", db, *extra]) == 2
    assert said in capsys.readouterr().err
