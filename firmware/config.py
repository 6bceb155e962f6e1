# Site settings: everything that differs between two readers lives in one JSON file on the
# reader's flash (config.json), never in the code. Missing keys take the defaults below.
import json

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
    # Where the reader keeps what must survive a reboot (its session counter).
    "state_file": "bandlink.state",
}


def load(path="config.json"):
    with open(path) as f:
        settings = json.load(f)
    merged = {}
    for key, default in DEFAULTS.items():
        value = settings.get(key, default)
        if isinstance(default, dict) and isinstance(value, dict):
            value = dict(default, **value)
        merged[key] = value
    for key in settings:
        if key not in merged:
            merged[key] = settings[key]  # board-specific settings: pins, antenna, wifi
    return merged
