"""HMAC-SHA256 on the reader (firmware/hmac256.py, on the real MicroPython unix port) equals
CPython's ``hmac``, and a till's offline PIN check (pinblock.PinBlock.check) agrees with the
gateway's ``offline_pin_check``, which made the band list's entries."""

from __future__ import annotations

import hashlib
import hmac
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandlink.gateway.core.payments.pin import offline_pin_check, offline_pin_key
from bandlink.tools.micropython import run_micropython

KEY = offline_pin_key(b"a gateway secret key of 32 chars!")


def on_the_reader(lines: list[str]) -> list[str]:
    """One micropython process answers every line (hmac_peer.py)."""
    done = run_micropython("firmware/tests/hmac_peer.py", input="".join(lines).encode())
    assert done.returncode == 0, done.stderr.decode()
    answers = done.stdout.decode().splitlines()
    assert len(answers) == len(lines) and not [a for a in answers if a.startswith("crash")]
    return answers


def hexed(data: bytes) -> str:
    return data.hex() or "-"


def test_rfc_4231_vectors() -> None:
    """RFC 4231 test cases 1, 2 and 6 (a key longer than a block is hashed first)."""
    cases = [
        (
            b"\x0b" * 20,
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            b"\xaa" * 131,
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
    ]
    lines = [f"hmac {key.hex()} {hexed(msg[:5])} {hexed(msg[5:])}\n" for key, msg, _ in cases]
    assert on_the_reader(lines) == [mac for _, _, mac in cases]


# One micropython run per example: each example is a whole batch.
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.binary(max_size=150), st.binary(max_size=200), st.binary(max_size=70)),
        min_size=20,
        max_size=60,
    )
)
def test_every_key_and_message_gives_cpythons_hmac(cases: list[tuple[bytes, bytes, bytes]]) -> None:
    lines = [f"hmac {hexed(k)} {hexed(m)} {hexed(more)}\n" for k, m, more in cases]
    for (key, message, more), got in zip(cases, on_the_reader(lines), strict=True):
        assert got == hmac.new(key, message + more, hashlib.sha256).hexdigest()


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.binary(min_size=2, max_size=2), st.text("0123456789", min_size=4, max_size=12)
        ),
        min_size=20,
        max_size=40,
    )
)
def test_the_tills_pin_check_matches_the_gateways(cases: list[tuple[bytes, str]]) -> None:
    lines = []
    for salt, pin in cases:
        check = offline_pin_check(KEY, salt, pin)
        wrong = bytes((check[0] ^ 1, check[1]))
        lines.append(f"check {KEY.hex()} {salt.hex()} {pin} {check.hex()}\n")
        lines.append(f"check {KEY.hex()} {salt.hex()} {pin} {wrong.hex()}\n")
    assert on_the_reader(lines) == ["1", "0"] * len(cases)


def test_a_pin_too_short_never_matches() -> None:
    salt = os.urandom(2)
    check = offline_pin_check(KEY, salt, "123")
    assert on_the_reader([f"check {KEY.hex()} {salt.hex()} 123 {check.hex()}\n"]) == ["0"]
