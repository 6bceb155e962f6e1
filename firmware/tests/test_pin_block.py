"""The PIN block: what the reader seals (firmware/pinblock.py on the real MicroPython unix port)
the gateway opens (gateway/core/payments/pin.py) to the PIN the guest typed, and only with the
reader's key and for the charge it was typed for."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandlink.gateway.core.aes import encrypt_block
from bandlink.gateway.core.payments.pin import (
    open_pin_block,
    reader_pin_key,
    seal_pin_block,
)
from bandlink.tools.micropython import run_micropython

SECRET = b"a gateway secret key of 32 chars!"
KEY = reader_pin_key(SECRET, "till-1")
# FIPS-197, appendix C.1 (AES-128).
FIPS_KEY = bytes(range(16))
FIPS_PLAIN = bytes.fromhex("00112233445566778899aabbccddeeff")
FIPS_CIPHER = bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")


def reader_side(lines: list[str]) -> list[str]:
    """One micropython process answers every line (pin_peer.py)."""
    done = run_micropython("firmware/tests/pin_peer.py", input="".join(lines).encode())
    assert done.returncode == 0, done.stderr.decode()
    answers = done.stdout.decode().splitlines()
    assert len(answers) == len(lines) and not [a for a in answers if a.startswith("crash")]
    return answers


def sealed_on_the_reader(cases: list[tuple[bytes, bytes, str]]) -> list[bytes]:
    answers = reader_side([f"seal {k.hex()} {c.hex()} {pin}\n" for k, c, pin in cases])
    return [bytes.fromhex(a) for a in answers]


def test_both_sides_encrypt_the_fips_197_vector() -> None:
    assert encrypt_block(FIPS_KEY, FIPS_PLAIN) == FIPS_CIPHER
    (theirs,) = reader_side([f"aes {FIPS_KEY.hex()} {FIPS_PLAIN.hex()}\n"])
    assert bytes.fromhex(theirs) == FIPS_CIPHER


def test_the_gateway_opens_the_readers_block_for_its_charge_only() -> None:
    charge, other_charge = os.urandom(16), os.urandom(16)
    other_key = reader_pin_key(SECRET, "till-2")
    first, again = sealed_on_the_reader([(KEY, charge, "1234"), (KEY, charge, "1234")])
    assert open_pin_block(KEY, charge, first) == "1234"
    assert again != first, "the random half makes every block of the same PIN different"
    assert open_pin_block(KEY, other_charge, first) is None
    assert open_pin_block(other_key, charge, first) is None
    assert open_pin_block(KEY, charge, os.urandom(16)) is None
    assert open_pin_block(KEY, charge, first[:8]) is None


def test_the_gateways_own_seal_opens_and_keys_differ_per_reader() -> None:
    charge = os.urandom(16)
    block = seal_pin_block(KEY, charge, "987654321012", os.urandom(16))
    assert open_pin_block(KEY, charge, block) == "987654321012"
    assert reader_pin_key(SECRET, "till-2") != KEY
    assert reader_pin_key(b"another secret", "till-1") != KEY


# One micropython run per example: each example is a whole batch.
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.binary(min_size=16, max_size=16),
            st.binary(min_size=16, max_size=16),
            st.text("0123456789", min_size=4, max_size=12),
        ),
        min_size=20,
        max_size=60,
    )
)
def test_every_pin_of_4_to_12_digits_comes_back(cases: list[tuple[bytes, bytes, str]]) -> None:
    for (key, charge, pin), block in zip(cases, sealed_on_the_reader(cases), strict=True):
        assert open_pin_block(key, charge, block) == pin
        assert open_pin_block(key, bytes(b ^ 1 for b in charge), block) is None
