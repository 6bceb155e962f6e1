"""The gateway's settings: sources and their precedence, validation, and messages to an operator."""

from __future__ import annotations

import os
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bandlink.gateway.core.bands.keys import DEVELOPMENT_MASTER_KEY
from bandlink.gateway.settings import (
    DEVELOPMENT_SECRET_KEY,
    Settings,
    SettingsError,
    load_settings,
    parse_listen_address,
)

BROKER = "mqtt://localhost:1883"
DB = "sqlite:///var/test.db"
LONG_KEY = "k" * 32
MASTER_KEY = "5f1c" * 8  # a band master key, as 32 hex digits


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BANDLINK_* variable from the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.upper().startswith("BANDLINK_"):
            monkeypatch.delenv(name)


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bandlink.toml"
    path.write_text(text)
    return str(path)


def refused(field: str, **values: Any) -> str:
    """Load with ``values``; expect a refusal naming ``field``; return the message."""
    with pytest.raises(SettingsError) as caught:
        load_settings(**values)
    message = str(caught.value)
    assert any(p.startswith(f"{field}: ") for p in caught.value.problems), message
    return message


def test_defaults() -> None:
    s = load_settings(broker=BROKER, db=DB)
    assert s.environment == "development"
    assert s.gateway_id == "gw-1"
    assert s.broker_user is None
    assert s.broker_password is None
    assert s.venue is None
    assert s.timezone == "UTC"
    assert s.http is None and s.http_address is None
    assert s.metrics is None and s.metrics_address is None
    assert s.secret_key.get_secret_value() == DEVELOPMENT_SECRET_KEY
    assert (s.max_batch, s.queue_size, s.log_level) == (256, 10_000, "info")


# --- sources and precedence -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ((), "gw-1"),
        (("file",), "gw-file"),
        (("file", "env"), "gw-env"),
        (("env",), "gw-env"),
        (("file", "env", "flag"), "gw-flag"),
        (("file", "flag"), "gw-flag"),
    ],
)
def test_precedence_flag_env_file_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layers: tuple[str, ...], expected: str
) -> None:
    in_file = 'gateway_id = "gw-file"\nmax_batch = 11\n'
    config = write_toml(tmp_path, in_file if "file" in layers else "")
    if "env" in layers:
        monkeypatch.setenv("BANDLINK_GATEWAY_ID", "gw-env")
        monkeypatch.setenv("BANDLINK_MAX_BATCH", "22")
    overrides: dict[str, Any] = {}
    if "flag" in layers:
        overrides = {"gateway_id": "gw-flag", "max_batch": 33}
    s = load_settings(config_file=config, broker=BROKER, db=DB, **overrides)
    assert s.gateway_id == expected
    batch = {"gw-1": 256, "gw-file": 11, "gw-env": 22, "gw-flag": 33}[expected]
    assert s.max_batch == batch


def test_none_overrides_do_not_mask_env_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_toml(tmp_path, 'venue = "demo"\n')
    monkeypatch.setenv("BANDLINK_GATEWAY_ID", "gw-env")
    s = load_settings(config_file=config, broker=BROKER, db=DB, gateway_id=None, venue=None)
    assert s.gateway_id == "gw-env"
    assert s.venue == "demo"


def test_required_values_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANDLINK_BROKER", "mqtt://broker.internal")
    monkeypatch.setenv("BANDLINK_DB", "postgres://gw@db.internal/bandlink")
    monkeypatch.setenv("BANDLINK_ENVIRONMENT", "production")
    monkeypatch.setenv("BANDLINK_SECRET_KEY", LONG_KEY)
    monkeypatch.setenv("BANDLINK_BAND_MASTER_KEY", MASTER_KEY)
    s = load_settings()
    assert s.broker_address == ("broker.internal", 1883)
    assert s.db == "postgresql+psycopg://gw@db.internal/bandlink"
    assert s.environment == "production"


def test_empty_env_counts_as_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_toml(tmp_path, 'gateway_id = "gw-file"\n')
    monkeypatch.setenv("BANDLINK_GATEWAY_ID", "")
    assert load_settings(config_file=config, broker=BROKER, db=DB).gateway_id == "gw-file"


def test_required_values_missing_are_named() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "broker: required" in message and "BANDLINK_BROKER" in message
    assert "db: required" in message and "BANDLINK_DB" in message


def test_config_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANDLINK_CONFIG", write_toml(tmp_path, f'broker = "{BROKER}"\n'))
    assert load_settings(db=DB).broker == BROKER


def test_config_file_argument_beats_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "env.toml"
    env_file.write_text('gateway_id = "gw-from-env-file"\n')
    monkeypatch.setenv("BANDLINK_CONFIG", str(env_file))
    config = write_toml(tmp_path, 'gateway_id = "gw-from-arg"\n')
    assert load_settings(config_file=config, broker=BROKER, db=DB).gateway_id == "gw-from-arg"


def test_no_config_file_reads_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A bandlink.toml in the working directory is not read unless named.
    write_toml(tmp_path, 'gateway_id = "gw-file"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(broker=BROKER, db=DB).gateway_id == "gw-1"


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(SettingsError, match="does not exist") as caught:
        load_settings(config_file=missing, broker=BROKER, db=DB)
    assert missing in str(caught.value)


def test_missing_config_file_from_env_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANDLINK_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsError, match="BANDLINK_CONFIG"):
        load_settings(broker=BROKER, db=DB)


def test_malformed_config_file_is_refused(tmp_path: Path) -> None:
    config = write_toml(tmp_path, "gateway_id = \n")
    with pytest.raises(SettingsError, match="settings file") as caught:
        load_settings(config_file=config, broker=BROKER, db=DB)
    assert config in str(caught.value)


def test_unknown_key_in_config_file_is_refused(tmp_path: Path) -> None:
    config = write_toml(tmp_path, 'gateway-id = "gw-2"\n')
    with pytest.raises(SettingsError, match=r"gateway-id: unknown setting"):
        load_settings(config_file=config, broker=BROKER, db=DB)


def test_unknown_override_is_refused() -> None:
    refused("brokr", broker=BROKER, db=DB, brokr="mqtt://elsewhere")


def test_bad_value_in_file_is_named(tmp_path: Path) -> None:
    config = write_toml(tmp_path, 'max_batch = "lots"\n')
    refused("max_batch", config_file=config, broker=BROKER, db=DB)


# --- database URL ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://gw:pw@db:5432/bl", "postgresql+psycopg://gw:pw@db:5432/bl"),
        ("postgres://gw:pw@db/bl", "postgresql+psycopg://gw:pw@db/bl"),
        ("postgresql+psycopg://gw@db/bl", "postgresql+psycopg://gw@db/bl"),
        ("postgresql:///bl", "postgresql+psycopg:///bl"),
        ("sqlite:///var/bandlink.db", "sqlite:///var/bandlink.db"),
        ("sqlite:////srv/bandlink.db", "sqlite:////srv/bandlink.db"),
    ],
)
def test_db_url_normalised(given: str, expected: str) -> None:
    assert load_settings(broker=BROKER, db=given).db == expected


def test_db_url_normalised_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANDLINK_DB", "postgres://gw@db/bl")
    assert load_settings(broker=BROKER).db == "postgresql+psycopg://gw@db/bl"


@pytest.mark.parametrize(
    "db",
    [
        "mysql://gw@db/bl",
        "postgresql+psycopg2://gw@db/bl",
        "postgresql+asyncpg://gw@db/bl",
        "var/bandlink.db",
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql://",
        "",
    ],
)
def test_bad_db_url_refused(db: str) -> None:
    message = refused("db", broker=BROKER, db=db)
    assert "sqlite:///" in message or "PostgreSQL" in message


# --- broker URL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("mqtt://localhost", ("localhost", 1883)),
        ("mqtt://broker.internal:8883", ("broker.internal", 8883)),
        ("mqtt://10.0.0.5:1884/", ("10.0.0.5", 1884)),
        ("mqtt://[::1]:1883", ("::1", 1883)),
    ],
)
def test_broker_address(url: str, address: tuple[str, int]) -> None:
    assert load_settings(broker=url, db=DB).broker_address == address


@pytest.mark.parametrize(
    "url",
    [
        "localhost:1883",
        "http://localhost:1883",
        "mqtts://localhost:8883",
        "mqtt://",
        "mqtt://:1883",
        "mqtt://localhost:port",
        "mqtt://localhost:0",
        "mqtt://localhost:70000",
        "mqtt://localhost:1883/topic",
        "mqtt://local host:1883",
        "",
    ],
)
def test_bad_broker_url_refused(url: str) -> None:
    assert "mqtt://host:port" in refused("broker", broker=url, db=DB)


def test_broker_url_with_credentials_refused_without_echoing_them() -> None:
    message = refused("broker", broker="mqtt://gw:hunter2@localhost", db=DB)
    assert "BANDLINK_BROKER_PASSWORD" in message
    assert "hunter2" not in message


# --- time zone, gateway id, listen addresses, tuning ------------------------------------------


def test_timezone_zone() -> None:
    s = load_settings(broker=BROKER, db=DB, timezone="Europe/Berlin")
    assert s.zone == ZoneInfo("Europe/Berlin")
    assert load_settings(broker=BROKER, db=DB).zone == ZoneInfo("UTC")


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus_Mons", "Europe/Berln", "Europe", "", "/etc/localtime", "localtime"]
)
def test_bad_timezone_refused(zone: str) -> None:
    assert "Europe/Berlin" in refused("timezone", broker=BROKER, db=DB, timezone=zone)


def test_closing_time() -> None:
    assert load_settings(broker=BROKER, db=DB).closing_time == time(4, 0)
    assert load_settings(broker=BROKER, db=DB, closing="23:30").closing_time == time(23, 30)


@pytest.mark.parametrize("closing", ["24:00", "4:00", "04:60", "04.00", "noon"])
def test_bad_closing_refused(closing: str) -> None:
    assert "HH:MM" in refused("closing", broker=BROKER, db=DB, closing=closing)


def test_the_rate_limit_is_on_unless_switched_off() -> None:
    default = load_settings(broker=BROKER, db=DB)
    assert (default.reader_rate, default.reader_burst) == (20, 40)
    assert load_settings(broker=BROKER, db=DB, reader_rate=0).reader_rate == 0
    assert "greater than or equal" in refused("reader_burst", broker=BROKER, db=DB, reader_burst=0)


def test_time_sync_interval() -> None:
    assert load_settings(broker=BROKER, db=DB).time_sync_s == 60
    assert "greater than or equal" in refused("time_sync_s", broker=BROKER, db=DB, time_sync_s=-1)


@pytest.mark.parametrize("gateway_id", ["gw-1", "north.gate_2", "G" * 32, "x"])
def test_gateway_id_accepted(gateway_id: str) -> None:
    assert load_settings(broker=BROKER, db=DB, gateway_id=gateway_id).gateway_id == gateway_id


@pytest.mark.parametrize(
    "gateway_id", ["", "G" * 33, "gw/1", "gw+", "#", "$gw", "gw 1", "gw-1\n", "gé", "gw:1"]
)
def test_bad_gateway_id_refused(gateway_id: str) -> None:
    assert "MQTT topic level" in refused("gateway_id", broker=BROKER, db=DB, gateway_id=gateway_id)


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:9100", ("0.0.0.0", 9100)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:9100", ("::1", 9100)),
    ],
)
def test_listen_addresses(value: str, address: tuple[str, int]) -> None:
    assert parse_listen_address(value) == address
    s = load_settings(broker=BROKER, db=DB, http=value, metrics=value)
    assert s.http_address == address
    assert s.metrics_address == address


@pytest.mark.parametrize(
    "value", ["8080", ":8080", "localhost:", "localhost:0", "localhost:65536", "::1:9100",
              "localhost:http", "local host:80", "[]:80", "localhost:+80"]
)  # fmt: skip
@pytest.mark.parametrize("field", ["http", "metrics"])
def test_bad_listen_address_refused(field: str, value: str) -> None:
    refused(field, broker=BROKER, db=DB, **{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_batch", 0),
        ("max_batch", 10_001),
        ("queue_size", 0),
        ("queue_size", 1_000_001),
        ("log_level", "verbose"),
        ("environment", "staging"),
    ],
)
def test_bad_tuning_refused(field: str, value: object) -> None:
    refused(field, broker=BROKER, db=DB, **{field: value})


def test_tuning_bounds_accepted() -> None:
    s = load_settings(broker=BROKER, db=DB, max_batch=10_000, queue_size=1, log_level="WARNING")
    assert (s.max_batch, s.queue_size, s.log_level) == (10_000, 1, "warning")


def test_every_bad_field_gets_its_own_line() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(broker="http://x", db="mysql://x", timezone="Nowhere", max_batch=0)
    fields = [p.partition(":")[0] for p in caught.value.problems]
    assert fields == ["broker", "db", "timezone", "max_batch"]
    assert isinstance(caught.value, ValueError)
    assert len(str(caught.value).splitlines()) == 1 + len(fields)


# --- secrets --------------------------------------------------------------------------------


def test_development_accepts_the_default_key() -> None:
    s = load_settings(broker=BROKER, db=DB, environment="development")
    assert s.secret_key.get_secret_value() == DEVELOPMENT_SECRET_KEY


def test_production_refuses_the_default_key() -> None:
    message = refused("secret_key", broker=BROKER, db=DB, environment="production")
    assert "BANDLINK_SECRET_KEY" in message


def test_production_refuses_the_default_key_given_explicitly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BANDLINK_ENVIRONMENT", "production")
    monkeypatch.setenv("BANDLINK_SECRET_KEY", DEVELOPMENT_SECRET_KEY)
    refused("secret_key", broker=BROKER, db=DB)


def test_production_refuses_a_short_key_without_echoing_it() -> None:
    short = "s3cr3t-" + "x" * 24  # 31 characters
    message = refused(
        "secret_key", broker=BROKER, db=DB, environment="production", secret_key=short
    )
    assert "at least 32" in message
    assert short not in message


def test_production_accepts_a_long_key() -> None:
    s = load_settings(
        broker=BROKER,
        db=DB,
        environment="production",
        secret_key=LONG_KEY,
        band_master_key=MASTER_KEY,
    )
    assert s.secret_key.get_secret_value() == LONG_KEY


def test_the_band_master_key_defaults_to_development_and_is_refused_in_production() -> None:
    assert load_settings(broker=BROKER, db=DB).band_master == DEVELOPMENT_MASTER_KEY
    production = {"environment": "production", "secret_key": LONG_KEY}
    message = refused("band_master_key", broker=BROKER, db=DB, **production)
    assert "BANDLINK_BAND_MASTER_KEY_FILE" in message
    explicit = DEVELOPMENT_MASTER_KEY.hex()
    refused("band_master_key", broker=BROKER, db=DB, band_master_key=explicit, **production)


def test_the_band_master_key_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    key_file.write_text(MASTER_KEY + "\n")
    s = load_settings(
        broker=BROKER,
        db=DB,
        environment="production",
        secret_key=LONG_KEY,
        band_master_key_file=str(key_file),
    )
    assert s.band_master == bytes.fromhex(MASTER_KEY)
    assert MASTER_KEY not in repr(s)
    missing = refused("band_master_key", broker=BROKER, db=DB, band_master_key_file="/no/key")
    assert "cannot read" in missing
    both = {"band_master_key": MASTER_KEY, "band_master_key_file": str(key_file)}
    assert "not both" in refused("band_master_key", broker=BROKER, db=DB, **both)


@pytest.mark.parametrize("bad", ["abc", "zz" * 16, "00" * 15, "00" * 17])
def test_a_band_master_key_that_is_not_16_bytes_is_refused_unechoed(bad: str) -> None:
    message = refused("band_master_key", broker=BROKER, db=DB, band_master_key=bad)
    assert "16 bytes" in message and bad not in message


def test_secrets_never_in_repr_or_str() -> None:
    s = load_settings(
        broker=BROKER,
        db="postgresql://gw:db-pass-9f2@db.internal/bandlink",
        broker_user="gw",
        broker_password="mqtt-pass-7c1",
        secret_key="signing-key-" + "z" * 40,
        band_master_key=MASTER_KEY,
        environment="production",
    )
    assert s.broker_password is not None
    assert s.broker_password.get_secret_value() == "mqtt-pass-7c1"
    assert s.db == "postgresql+psycopg://gw:db-pass-9f2@db.internal/bandlink"
    for text in (repr(s), str(s), f"{s}"):
        assert "mqtt-pass-7c1" not in text
        assert "signing-key-" not in text
        assert "db-pass-9f2" not in text
        assert MASTER_KEY not in text
        assert "db.internal" in text  # the masked URL is still there to read


def test_settings_are_frozen() -> None:
    s = load_settings(broker=BROKER, db=DB)
    name = "gateway_id"
    with pytest.raises(ValueError, match="frozen"):
        setattr(s, name, "gw-2")
    assert isinstance(s, Settings)
