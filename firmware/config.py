# Site settings: everything that differs between two readers lives in one JSON file on the
# reader's flash (config.json), never in the code. Missing keys take the defaults below.
#
# The file is checked whole at boot, before anything connects: a value the reader cannot use
# (a 25-character gate name would fail the first tap's validation, a password without a user
# name makes a strict broker hang up) stops the reader with one ConfigError that names the key
# and the rule, instead of a crash later or a reader that never comes online. Role, gate,
# direction, deadline and hold time are only defaults: the gateway's Config overrides them
# (app.py, SPEC "Configuration").
import json
from binascii import unhexlify

from micropython import const

from protocol import ProtocolError
from protocol.fields import reader_id as _reader_id

DEFAULTS = {
    "reader": "reader-1",  # also the MQTT client id and broker username
    "role": "gate",
    "board": "esp32",
    "broker": {"host": "127.0.0.1", "port": 1883, "user": None, "password": None},
    "keepalive_s": 30,
    # The longest a guest waits for the gateway before the reader asks them to tap again.
    "deadline_ms": 800,
    # How long a green or red light stays on before the reader returns to idle.
    "hold_ms": 1500,
    "gate": {"direction": "in", "gate": ""},
    # Where the reader keeps what must survive a reboot: its session counter in this file, its
    # journal of operations in <state_file>.journal, its band list in <state_file>.list, the
    # gateway's last Config in <state_file>.cfg.
    "state_file": "bandlink.state",
}

ROLES = ("gate", "pos")  # the roles this firmware runs
BOARDS = ("esp32", "sim")
DIRECTIONS = ("in", "out")
GATE_NAME_MAX = 24  # characters (SPEC: Tap and Config `gate`, text <= 24)
_PIN_KEY_SIZE = const(16)  # bytes: a pos reader's "pin_key" and "offline_pin_key", in hex
_U16 = 1 << 16
_U32 = 1 << 32


class ConfigError(ValueError):
    """config.json cannot run this reader: args[0] says which key and which rule."""


def load(path="config.json"):
    """The settings in path, merged over DEFAULTS and checked; raises ConfigError."""
    try:
        with open(path) as f:
            settings = json.load(f)
    except OSError as exc:
        raise ConfigError("%s: cannot be read (%s)" % (path, exc)) from None
    except ValueError:
        raise ConfigError("%s: is not valid JSON" % path) from None
    if not isinstance(settings, dict):
        raise ConfigError("%s: must hold a JSON object" % path)
    merged = {}
    for key, default in DEFAULTS.items():
        value = settings.get(key, default)
        if isinstance(default, dict) and isinstance(value, dict):
            value = dict(default, **value)
        merged[key] = value
    for key in settings:
        if key not in merged:
            merged[key] = settings[key]  # board-specific settings: pins, antenna, wifi
    try:
        check(merged)
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (path, exc.args[0])) from None
    return merged


def check(settings):
    """Raise ConfigError naming the first key whose value this reader cannot use."""
    try:
        _reader_id("reader", settings["reader"])
    except ProtocolError:
        _refuse("reader", "must be 1 to 32 ASCII letters, digits, '-', '_' or '.'")
    _choice(settings, "role", ROLES)
    _choice(settings, "board", BOARDS)
    broker = _section(settings, "broker")
    if not isinstance(broker["host"], str) or not broker["host"]:
        _refuse("broker.host", "must be a host name or address")
    _count(broker, "port", _U16, "broker.port")
    user, password = broker["user"], broker["password"]
    for key, value in (("broker.user", user), ("broker.password", password)):
        if value is not None and not isinstance(value, str):
            _refuse(key, "must be text, or null")
    if (user is None) != (password is None):
        _refuse("broker.user, broker.password", "must be given both or neither (MQTT-3.1.2-22)")
    if user is not None and user != settings["reader"]:
        _refuse("broker.user", "must be the reader id (the broker's ACL is per reader id)")
    _count(settings, "keepalive_s", _U16)
    _count(settings, "deadline_ms", _U32)
    _count(settings, "hold_ms", _U32)
    gate = _section(settings, "gate")
    _choice(gate, "direction", DIRECTIONS, "gate.direction")
    name = gate["gate"]
    if not isinstance(name, str) or len(name) > GATE_NAME_MAX:
        _refuse("gate.gate", "must be text of at most %d characters" % GATE_NAME_MAX)
    if not isinstance(settings["state_file"], str) or not settings["state_file"]:
        _refuse("state_file", "must be a file name")
    if settings["role"] == "pos":
        # Without its key a pos reader could not seal a PIN: refused at boot, not at the first
        # guest asked for one.
        _key(settings.get("pin_key"), "pin_key", "a pos reader's PIN key")
        # The venue's offline PIN key (SPEC, "Offline PIN check"): without it a till takes no
        # offline sale from a band whose entry asks for a PIN (pos.py), so it may be absent (a
        # till provisioned before offline sales); present, it must be usable.
        offline_key = settings.get("offline_pin_key")
        if offline_key is not None:
            _key(offline_key, "offline_pin_key", "the venue's offline PIN key")


def _key(value, name, what):
    try:
        ok = isinstance(value, str) and len(unhexlify(value)) == _PIN_KEY_SIZE
    except ValueError:
        ok = False
    if not ok:
        _refuse(name, "must be %d hex digits (%s)" % (2 * _PIN_KEY_SIZE, what))


def _refuse(key, rule):
    raise ConfigError("%s %s" % (key, rule))


def _choice(section, key, allowed, name=None):
    if section[key] not in allowed:
        _refuse(name or key, "must be one of %s" % ", ".join('"%s"' % a for a in allowed))


def _count(section, key, limit, name=None):
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < limit:
        _refuse(name or key, "must be a whole number from 1 to %d" % (limit - 1))


def _section(settings, key):
    section = settings[key]
    if not isinstance(section, dict):
        _refuse(key, "must be a JSON object")
    return section
