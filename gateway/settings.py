"""The gateway's settings: one validated object, built from flags, environment and a TOML file.

Precedence, highest first: explicit values (command-line flags, passed to ``load_settings`` as
keyword arguments), environment variables ``BANDLINK_<FIELD>`` (``BANDLINK_DB``,
``BANDLINK_SECRET_KEY``, ...), a TOML settings file (top-level keys named like the fields, path
from ``load_settings(config_file=...)`` or ``BANDLINK_CONFIG``), then the defaults below.

Every check happens here, before anything connects: a bad value is refused with a
``SettingsError`` that names the field and says what to set, one line per problem, and never
echoes a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import time
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .core.bands.keys import DEVELOPMENT_MASTER_KEY, KEY_SIZE

ENV_PREFIX: Final = "BANDLINK_"
CONFIG_ENV: Final = "BANDLINK_CONFIG"
DEFAULT_BROKER_PORT: Final = 1883
DEVELOPMENT_SECRET_KEY: Final = "development-only-insecure-key"
SECRET_KEY_MIN_LENGTH: Final = 32
# Same rule as a reader id (protocol/fields.py): it becomes an MQTT topic level.
GATEWAY_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.-]{1,32}")

# scheme -> the scheme SQLAlchemy is given (psycopg 3 for PostgreSQL).
_DB_SCHEMES: Final = {
    "sqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}

# The settings file for the Settings being built by load_settings (None: no file).
_config_file: ContextVar[Path | None] = ContextVar("bandlink_config_file", default=None)


class SettingsError(ValueError):
    """Settings an operator has to fix; ``str()`` is a readable message, one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid gateway settings:\n" + "\n".join(f"  {p}" for p in problems))


def parse_listen_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ValueError if malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port):
        raise ValueError(f"must look like HOST:PORT (e.g. 127.0.0.1:9100), not {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, e.g. [::1]:9100, not {value!r}")
    if not host or any(ch.isspace() or ch in "[]/" for ch in host):
        raise ValueError(f"must look like HOST:PORT (e.g. 0.0.0.0:9100), not {value!r}")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port must be 1..65535, not {number}")
    return host, number


def parse_broker_url(url: str) -> tuple[str, int]:
    """``mqtt://host[:port]`` -> (host, port), port 1883 when omitted; ValueError if malformed."""
    parsed = urlsplit(url)
    if "@" in parsed.netloc:
        # Not echoed: it holds a password. bus.py would drop it silently.
        raise ValueError(
            "must not hold credentials; set broker_user and broker_password "
            "(BANDLINK_BROKER_USER, BANDLINK_BROKER_PASSWORD) instead"
        )
    if parsed.scheme != "mqtt":
        raise ValueError(f"must look like mqtt://host:port, not {url!r}")
    if (parsed.path not in ("", "/")) or parsed.query or parsed.fragment:
        raise ValueError(f"must be mqtt://host:port with no path or query, not {url!r}")
    if not parsed.hostname or any(ch.isspace() for ch in url):
        raise ValueError(f"must name a host: mqtt://host:port, not {url!r}")
    try:
        port = parsed.port
    except ValueError:
        raise ValueError(f"must be mqtt://host:port with a port 1..65535, not {url!r}") from None
    if port is None:
        return parsed.hostname, DEFAULT_BROKER_PORT
    if port == 0:
        raise ValueError(f"must be mqtt://host:port with a port 1..65535, not {url!r}")
    return parsed.hostname, port


def normalise_db_url(url: str) -> str:
    """Check a SQLAlchemy URL's scheme; PostgreSQL URLs get the psycopg 3 driver."""
    scheme, sep, rest = url.partition("://")
    target = _DB_SCHEMES.get(scheme.lower()) if sep else None
    if target is None:
        shown = scheme if sep else "(none)"
        raise ValueError(
            f"unsupported scheme {shown!r}: use sqlite:///path/to/file.db or "
            "postgresql://user:password@host/dbname (driven by psycopg 3)"
        )
    if target == "sqlite" and (not rest.startswith("/") or rest in ("/", "/:memory:")):
        raise ValueError("a SQLite URL names a file: sqlite:///relative.db or sqlite:////abs.db")
    if target != "sqlite" and not rest:
        raise ValueError("a PostgreSQL URL names a database: postgresql://user@host/dbname")
    return f"{target}://{rest}"


def _mask_db_url(url: str) -> str:
    """The URL with its password (if any) replaced by ***, for repr and logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, location = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{location}"


class Settings(BaseSettings):
    """Everything the gateway process is configured with; build it with ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        # BANDLINK_X= (empty, as compose files produce for unset variables) counts as unset.
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
    )

    environment: Literal["development", "production"] = "development"
    gateway_id: str = "gw-1"
    broker: str
    broker_user: str | None = None
    broker_password: SecretStr | None = None
    db: str
    venue: str | None = None
    timezone: str = "UTC"  # a site's own (venue file) wins
    closing: str = "04:00"  # local; a site's own wins: presence ends at the latest closing
    http: str | None = None
    metrics: str | None = None
    secret_key: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_SECRET_KEY),
        validate_default=True,  # the production check below must see the default too
    )
    # Every band's keys derive from this one (AN10922): the key itself, or a file holding it
    # (only its owner should read it). Never kept in the database.
    band_master_key_file: Path | None = None
    band_master_key: SecretStr | None = Field(default=None, validate_default=True)
    max_batch: int = Field(default=256, ge=1, le=10_000)
    queue_size: int = Field(default=10_000, ge=1, le=1_000_000)
    # Seconds between TIME_SYNC commands to every reader with an open session (each birth
    # gets one at once); 0: only on births.
    time_sync_s: float = Field(default=60, ge=0, le=86_400)
    # Per reader: taps a second, and the burst allowed above it; over it a tap is answered
    # busy (RETRY) without being decided. A person taps a few times a second at most, so 20
    # is only ever reached by a broken or hostile reader. 0: no limit (the load generator and
    # the end-to-end flood tests pose as a few readers tapping thousands of times a second).
    reader_rate: float = Field(default=20, ge=0)
    reader_burst: int = Field(default=40, ge=1)
    # Seconds over which dropped frames past the first few are summarised in one log line.
    flood_log_s: float = Field(default=10, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Money: the one currency the venue runs in (ISO 4217), and how long a till's charge waits
    # for a band before it expires and its reader is released.
    currency: str = "EUR"
    charge_timeout_s: float = Field(default=120, gt=0, le=3600)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win. No .env file and no secrets directory.
        path = _config_file.get()
        if path is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, path))

    @field_validator("environment", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("currency")
    @classmethod
    def _check_currency(cls, value: str) -> str:
        from .core.payments.money import EXPONENTS

        if value not in EXPONENTS:
            raise ValueError(f"must be one of {', '.join(EXPONENTS)} (ISO 4217), not {value!r}")
        return value

    @field_validator("gateway_id")
    @classmethod
    def _check_gateway_id(cls, value: str) -> str:
        if not GATEWAY_ID_PATTERN.fullmatch(value):
            raise ValueError(
                f"must be 1..32 ASCII letters, digits, '-', '_' or '.' (an MQTT topic level), "
                f"not {value!r}"
            )
        return value

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        parse_broker_url(value)
        return value

    @field_validator("db")
    @classmethod
    def _check_db(cls, value: str) -> str:
        return normalise_db_url(value)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        if value == "localtime":
            raise ValueError("name the venue's zone (e.g. Europe/Berlin), not the host's localtime")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name such as Europe/Berlin or UTC"
            ) from None
        return value

    @field_validator("closing")
    @classmethod
    def _check_closing(cls, value: str) -> str:
        from .venue import parse_closing

        parse_closing(value)
        return value

    @field_validator("http", "metrics")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen_address(value)
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if info.data.get("environment") != "production":
            return value
        key = value.get_secret_value()
        hint = (
            f"set BANDLINK_SECRET_KEY (or secret_key in the settings file) to a random string "
            f"of at least {SECRET_KEY_MIN_LENGTH} characters, e.g. the output of "
            f"`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
        if key == DEVELOPMENT_SECRET_KEY:
            raise ValueError(f"the development default is refused in production; {hint}")
        if len(key) < SECRET_KEY_MIN_LENGTH:
            raise ValueError(f"too short for production ({len(key)} characters); {hint}")
        return value

    @field_validator("band_master_key")
    @classmethod
    def _check_band_master_key(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        master = _band_master(value, info.data.get("band_master_key_file"))
        if info.data.get("environment") == "production" and master == DEVELOPMENT_MASTER_KEY:
            raise ValueError(
                "the development master key is refused in production; set "
                "BANDLINK_BAND_MASTER_KEY_FILE to a file holding 32 random hex digits, e.g. "
                "`python -c 'import secrets; print(secrets.token_hex(16))'`"
            )
        return value

    @property
    def band_master(self) -> bytes:
        """The bands' master key: from the file, else the key, else the development default."""
        return _band_master(self.band_master_key, self.band_master_key_file)

    @property
    def broker_address(self) -> tuple[str, int]:
        """(host, port) of the MQTT broker."""
        return parse_broker_url(self.broker)

    @property
    def http_address(self) -> tuple[str, int] | None:
        """(host, port) to serve HTTP on, or None for no HTTP listener."""
        return None if self.http is None else parse_listen_address(self.http)

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of the Prometheus exporter, or None when metrics are off."""
        return None if self.metrics is None else parse_listen_address(self.metrics)

    @property
    def zone(self) -> ZoneInfo:
        """The venue's time zone: tickets are valid per calendar day in it."""
        return ZoneInfo(self.timezone)

    @property
    def closing_time(self) -> time:
        """The default closing time of a site (local): presence does not outlive it."""
        from .venue import parse_closing

        return parse_closing(self.closing)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # SecretStr fields mask themselves; a database URL may carry a password too.
        for name, value in super().__repr_args__():
            yield name, _mask_db_url(value) if name == "db" else value


def _band_master(key: SecretStr | None, key_file: Path | None) -> bytes:
    if key is not None and key_file is not None:
        raise ValueError("set band_master_key or band_master_key_file, not both")
    if key_file is not None:
        try:
            text = key_file.read_text().strip()
        except OSError as err:
            raise ValueError(f"cannot read band_master_key_file: {err.strerror}") from None
    elif key is not None:
        text = key.get_secret_value().strip()
    else:
        return DEVELOPMENT_MASTER_KEY
    try:
        master = bytes.fromhex(text)
    except ValueError:
        master = b""
    if len(master) != KEY_SIZE:
        raise ValueError(
            f"the master key is {KEY_SIZE} bytes, written as {2 * KEY_SIZE} hex digits"
        )
    return master


def load_settings(*, config_file: str | None = None, **overrides: object) -> Settings:
    """Build the settings: ``overrides`` (flags) > ``BANDLINK_*`` > settings file > defaults.

    ``config_file`` (else ``BANDLINK_CONFIG``) names a TOML file of top-level ``field = value``
    pairs; it must exist. Overrides that are None are ignored, so that flags left unset on the
    command line do not mask the environment or the file. Raises ``SettingsError``.
    """
    path = _resolve_config_file(config_file)
    explicit: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    token = _config_file.set(path)
    try:
        return Settings(**explicit)
    except ValidationError as exc:
        # `from None`: pydantic's own message echoes input values, secrets included.
        raise SettingsError(_problems(exc)) from None
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise SettingsError([f"settings file {path}: {exc}"]) from None
    finally:
        _config_file.reset(token)


def _resolve_config_file(config_file: str | None) -> Path | None:
    name = config_file if config_file is not None else os.environ.get(CONFIG_ENV) or None
    if name is None:
        return None
    path = Path(name)
    if not path.is_file():
        source = "config_file" if config_file is not None else CONFIG_ENV
        raise SettingsError([f"settings file {name!r} (from {source}) does not exist"])
    return path


def _problems(exc: ValidationError) -> list[str]:
    problems: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        kind = error["type"]
        if kind == "missing":
            message = (
                f"required: pass --{field.replace('_', '-')}, set {ENV_PREFIX}{field.upper()} "
                f"or put {field} = ... in the settings file"
            )
        elif kind == "extra_forbidden":
            message = f"unknown setting (known: {', '.join(Settings.model_fields)})"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        line = f"{field}: {message}"
        if line not in problems:
            problems.append(line)
    return problems
