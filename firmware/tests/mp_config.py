# firmware/config.py on the real MicroPython: config.json is checked whole at load, and a value
# the reader cannot use is refused with one error naming the key and the rule. Run by
# test_unix_port.py; test_config_json.py runs main.py on a bad file.
import json

import mptest
from config import ConfigError, load

GOOD = {
    "reader": "gate-1",
    "board": "sim",
    "antenna": "127.0.0.1:9",
    "broker": {"host": "127.0.0.1", "port": 1883, "user": "gate-1", "password": "pw"},
    "gate": {"direction": "out", "gate": "north"},
}


def write(settings):
    path = mptest.scratch("config", ".json")
    with open(path, "w") as f:
        f.write(settings if isinstance(settings, str) else json.dumps(settings))
    return path


def changed(**changes):
    """GOOD with some keys changed (None: JSON null); broker__port=0 changes broker.port."""
    settings = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        section, _, name = key.rpartition("__")
        (settings[section] if section else settings)[name] = value
    return settings


def refused(settings, *words):
    path = write(settings)
    err = mptest.raises(ConfigError, load, path)
    message = err.args[0]
    assert message.startswith(path + ": "), message
    for word in words:
        assert word in message, (word, message)
    return message


def test_a_good_file_loads_with_the_defaults_beneath():
    settings = load(write(GOOD))
    assert settings["gate"] == {"direction": "out", "gate": "north"}
    assert settings["deadline_ms"] == 800 and settings["keepalive_s"] == 30
    assert settings["antenna"] == "127.0.0.1:9", "board-specific keys are kept"
    anonymous = changed(broker__user=None, broker__password=None)
    assert load(write(anonymous))["broker"]["user"] is None


def test_a_gate_name_of_25_characters_is_refused():
    refused(changed(gate__gate="g" * 25), "gate.gate", "at most 24 characters")
    load(write(changed(gate__gate="g" * 24)))
    load(write(changed(gate__gate="é" * 24)))  # characters, not bytes


def test_the_reader_id_must_be_a_topic_level():
    for bad in ("", "x" * 33, "gate/1", "gate+1", "gate 1", "$gw", "gaté", 7):
        settings = changed(reader=bad)
        settings["broker"]["user"] = bad
        refused(settings, "reader ", "1 to 32")
    default_id = changed(broker__user="reader-1")
    del default_id["reader"]
    assert load(write(default_id))["reader"] == "reader-1"


def test_direction_role_and_board_come_from_their_lists():
    refused(changed(gate__direction="sideways"), "gate.direction", '"in", "out"')
    refused(changed(role="till"), "role", '"gate", "pos"')
    refused(changed(board="esp8266"), "board", '"esp32", "sim"')


def test_a_pos_reader_needs_its_pin_key():
    key = "00112233445566778899aabbccddeeff"
    assert load(write(changed(role="pos", pin_key=key)))["pin_key"] == key
    assert load(write(changed(role="pos", pin_key=key.upper())))["role"] == "pos"
    for bad in (None, key[:30], key + "00", "zz" + key[2:], 16):
        settings = changed(role="pos")
        if bad is not None:
            settings["pin_key"] = bad
        refused(settings, "pin_key", "32 hex digits")
    load(write(GOOD))  # a gate needs none


def test_a_pos_readers_offline_pin_key_may_be_absent_but_not_unusable():
    key = "00112233445566778899aabbccddeeff"
    loaded = load(write(changed(role="pos", pin_key=key, offline_pin_key="ff" * 16)))
    assert loaded["offline_pin_key"] == "ff" * 16
    assert "offline_pin_key" not in load(write(changed(role="pos", pin_key=key)))
    for bad in (key[:30], key + "00", "zz" + key[2:], 16, ""):
        refused(changed(role="pos", pin_key=key, offline_pin_key=bad), "offline_pin_key", "32 hex")


def test_times_are_positive_whole_numbers():
    for key in ("deadline_ms", "hold_ms", "keepalive_s"):
        for bad in (0, -5, 1.5, "800", True, None):
            refused(changed(**{key: bad}), key, "whole number")
    refused(changed(keepalive_s=65536), "keepalive_s", "65535")
    load(write(changed(deadline_ms=1, hold_ms=1, keepalive_s=65535)))


def test_the_broker_needs_a_host_a_port_and_both_credentials_or_neither():
    refused(changed(broker__host=""), "broker.host")
    refused(changed(broker__host=None), "broker.host")
    refused(changed(broker__port=0), "broker.port")
    refused(changed(broker__port=70000), "broker.port")
    refused(changed(broker__port="1883"), "broker.port")
    refused(changed(broker__user=None), "broker.user, broker.password", "both or neither")
    refused(changed(broker__password=None), "both or neither")
    refused(changed(broker__user="gate-2"), "broker.user", "reader id")
    refused(changed(broker__password=42), "broker.password", "text")


def test_sections_and_the_file_itself_must_be_objects():
    refused(changed(gate="north"), "gate ", "JSON object")
    refused(changed(broker="127.0.0.1"), "broker ", "JSON object")
    refused("[1, 2]", "JSON object")
    refused('{"reader": "gate-1",', "not valid JSON")
    refused(changed(state_file=""), "state_file")
    err = mptest.raises(ConfigError, load, "/tmp/bl-config-missing.json")
    assert "cannot be read" in err.args[0], err.args


mptest.main(globals())
