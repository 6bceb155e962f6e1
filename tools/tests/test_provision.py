"""``bandlink provision``: identities hashed into a broker directory, credentials into the
reader's config.json or the gateway's settings file (owner-only), never printed; a broker
started from the directory lets them in, and nobody else."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from bandlink.gateway.core.handler import Core
from bandlink.gateway.core.payments.pin import (
    offline_pin_check,
    offline_pin_key,
    open_pin_block,
    reader_pin_key,
    seal_pin_block,
)
from bandlink.gateway.settings import load_settings
from bandlink.tools.access import AccessError, BrokerAccess, Login
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.cli import main
from bandlink.tools.provision import SECRET_KEY_ENV, provision_gateway, provision_reader
from bandlink.tools.wire import connect


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_reader_gets_a_hashed_identity_and_its_config_the_credentials(tmp_path: Path) -> None:
    broker_dir, config = tmp_path / "broker", tmp_path / "gate-1.json"
    config.write_text(json.dumps({"reader": "gate-1", "role": "gate", "broker": {"port": 1}}))
    first = provision_reader(broker_dir, "gate-1", config, broker_url="mqtt://10.0.0.5:1884")
    second = provision_reader(broker_dir, "gate-1", config)  # again: the password is replaced
    written = json.loads(config.read_text())
    assert written["role"] == "gate"  # the rest of the file is kept
    assert written["broker"] == {
        "host": "10.0.0.5",
        "port": 1884,
        "user": "gate-1",
        "password": second.password,
    }
    assert first.password != second.password and mode(config) == 0o600
    access = BrokerAccess(broker_dir)
    assert access.users() == ["gate-1"]
    for path in (access.password_path, access.dynsec_path):
        assert mode(path) == 0o600
        assert second.password not in path.read_text() and first.password not in path.read_text()
    assert access.password_path.read_text().startswith("gate-1:$7$")
    (client,) = json.loads(access.dynsec_path.read_text())["clients"]
    assert client["username"] == "gate-1" and client["roles"] == [{"rolename": "gate-1"}]
    with pytest.raises(AccessError):
        provision_reader(broker_dir, "gate-2", config)  # gate-1's config
    with pytest.raises(AccessError):
        provision_reader(broker_dir, "bl/1/#", tmp_path / "bad.json")


def test_a_gateway_gets_its_identity_in_its_settings_file(tmp_path: Path) -> None:
    settings = tmp_path / "gw-1.toml"
    settings.write_text('# site settings\ndb = "sqlite:///x.db"\nbroker_user = "old"\n')
    login = provision_gateway(tmp_path / "broker", "gw-1", settings, broker_url="mqtt://b:1883")
    assert mode(settings) == 0o600 and "# site settings" in settings.read_text()
    loaded = load_settings(config_file=str(settings))
    assert (loaded.gateway_id, loaded.broker, loaded.db) == (
        "gw-1",
        "mqtt://b:1883",
        "sqlite:///x.db",
    )
    assert loaded.broker_user == "gw-1@gateway" == login.user
    assert loaded.broker_password is not None
    assert loaded.broker_password.get_secret_value() == login.password
    with pytest.raises(AccessError):
        provision_gateway(tmp_path / "broker", "gw-2", settings)  # gw-1's settings


def test_provisioned_identities_log_in_and_nobody_else(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "broker")
    reader = provision_reader(broker.directory, "gate-1", tmp_path / "gate-1.json")
    gateway = provision_gateway(broker.directory, "gw-1", tmp_path / "gw-1.toml")
    with broker:
        for login in (reader, gateway):
            link = connect(broker, login)
            assert not link.refused, (login.user, link.reason)
            link.close()
        for stranger in (None, Login("gate-1", gateway.password)):
            link = connect(broker, stranger)
            assert link.refused
            link.close()


def test_the_command_never_prints_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gate-1.json"
    argv = ["provision", "reader", "gate-1", "--broker-dir", str(tmp_path / "b")]
    assert main([*argv, "--config", str(config)]) == 0
    password = json.loads(config.read_text())["broker"]["password"]
    out = capsys.readouterr().out
    assert "gate-1" in out and password not in out
    assert main(["provision", "gateway", "no/slash", "--broker-dir", "b", "--config", "x"]) == 2


def test_a_venue_directory_gets_no_all_powerful_identity_by_mistake(tmp_path: Path) -> None:
    """Harness and control identities may publish and read everything (or manage the broker):
    the tools make them for their own brokers, and only when they say so."""
    access = BrokerAccess(tmp_path)
    for user in ("x@harness", "x@control"):
        with pytest.raises(AccessError):
            access.add([user])
    assert access.users() == []
    (made,) = access.add(["x@harness"], tools=True)
    assert made.user == "x@harness"


def test_a_pos_reader_gets_the_pin_key_the_gateway_derives_and_none_without_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "a-gateway-secret-key-of-32-chars-or-more"
    config = tmp_path / "till-1.json"
    argv = ["provision", "reader", "till-1", "--broker-dir", str(tmp_path / "b")]
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    assert main([*argv, "--config", str(config), "--role", "pos"]) == 2
    assert SECRET_KEY_ENV in capsys.readouterr().out
    assert not config.exists() and BrokerAccess(tmp_path / "b").users() == []
    monkeypatch.setenv(SECRET_KEY_ENV, secret)
    assert main([*argv, "--config", str(config), "--role", "pos"]) == 0
    written = json.loads(config.read_text())
    key = bytes.fromhex(written["pin_key"])
    assert written["role"] == "pos" and key == reader_pin_key(secret.encode(), "till-1")
    assert written["pin_key"] not in capsys.readouterr().out
    # What the reader seals with that key, the gateway opens with its own derivation.
    charge = os.urandom(16)
    block = seal_pin_block(key, charge, "4321", os.urandom(16))
    assert open_pin_block(reader_pin_key(secret.encode(), "till-1"), charge, block) == "4321"
    assert reader_pin_key(secret.encode(), "till-2") != key  # each reader its own
    # Provisioned again, without --role: still a pos reader, so still needs the secret.
    monkeypatch.delenv(SECRET_KEY_ENV)
    with pytest.raises(AccessError, match=SECRET_KEY_ENV):
        provision_reader(tmp_path / "b", "till-1", config)
    provision_reader(tmp_path / "b", "till-1", config, role="gate")
    assert "pin_key" not in json.loads(config.read_text())


def test_a_pos_reader_gets_the_venues_offline_pin_key_a_gate_neither_key(tmp_path: Path) -> None:
    """The till checks a PIN offline against the band list's check, which the gateway computed
    under the venue's offline PIN key: provisioned, the till holds that key (hex, as
    config.json carries it), the same for every till; a gate holds no PIN key at all."""
    secret, broker_dir = "a-gateway-secret-key-of-32-chars-or-more", tmp_path / "b"
    for till in ("pos-1", "pos-2"):
        provision_reader(broker_dir, till, tmp_path / f"{till}.json", role="pos", secret_key=secret)
    pos_1, pos_2 = (json.loads((tmp_path / f"{t}.json").read_text()) for t in ("pos-1", "pos-2"))
    venue_key = offline_pin_key(secret.encode())
    assert pos_1["offline_pin_key"] == pos_2["offline_pin_key"] == venue_key.hex()
    assert pos_1["pin_key"] == reader_pin_key(secret.encode(), "pos-1").hex() != pos_2["pin_key"]
    # The check the desk's PIN gets on the list is what the till computes from the typed PIN.
    check, salt = Core(secret_key=secret.encode()).offline_pin_check("2468")
    till_key = bytes.fromhex(pos_1["offline_pin_key"])
    assert offline_pin_check(till_key, salt, "2468") == check
    assert offline_pin_check(till_key, salt, "2469") != check
    gate = tmp_path / "gate-1.json"
    provision_reader(broker_dir, "gate-1", gate, role="gate", secret_key=secret)
    assert {"pin_key", "offline_pin_key"}.isdisjoint(json.loads(gate.read_text()))
    # A till re-provisioned as a gate loses both: a gate's flash should hold no key.
    provision_reader(broker_dir, "pos-1", tmp_path / "pos-1.json", role="gate")
    assert {"pin_key", "offline_pin_key"}.isdisjoint(
        json.loads((tmp_path / "pos-1.json").read_text())
    )


def test_a_pos_reader_without_the_secret_key_is_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    """No secret key, no till: a till without its keys could take no PIN, so provisioning
    stops, saying where the key comes from, before any identity or file is made."""
    config, broker_dir = tmp_path / "pos-1.json", tmp_path / "b"
    for secret in (None, ""):
        with pytest.raises(AccessError, match=SECRET_KEY_ENV):
            provision_reader(broker_dir, "pos-1", config, role="pos", secret_key=secret)
    assert not config.exists() and BrokerAccess(broker_dir).users() == []
