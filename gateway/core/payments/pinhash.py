"""PINs at rest: argon2id (a slow, memory-hard hash), over the PIN peppered with the gateway's
secret key. A PIN has few digits, so a stolen database alone must not be enough to try them
all: without the key, no guess can even be tested.

The cost is OWASP's minimum for argon2id (19 MiB, two passes): tens of milliseconds per check,
paid once per PIN a guest types, never per tap without one. Staff passwords are kept the same
way (``hash_password``), under the subject ``staff:<login>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PIN_PATTERN = re.compile(r"[0-9]{4,12}")
PASSWORD_MIN = 12

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class PinHasher:
    def __init__(self, pepper: bytes) -> None:
        self._pepper = pepper

    def hash(self, guest_id: str, pin: str) -> str:
        if not PIN_PATTERN.fullmatch(pin):
            raise ValueError("a PIN is 4 to 12 digits")
        return _HASHER.hash(self._peppered(guest_id, pin))

    def hash_password(self, subject: str, password: str) -> str:
        if len(password) < PASSWORD_MIN:
            raise ValueError(f"a password is at least {PASSWORD_MIN} characters")
        return _HASHER.hash(self._peppered(subject, password))

    def verify(self, stored: str, guest_id: str, pin: str) -> bool:
        try:
            return _HASHER.verify(stored, self._peppered(guest_id, pin))
        except (VerificationError, InvalidHashError):
            return False

    def _peppered(self, guest_id: str, pin: str) -> bytes:
        # The guest id too: two guests with one PIN have unrelated inputs.
        message = guest_id.encode() + b"\x00" + pin.encode()
        return hmac.new(self._pepper, message, hashlib.sha256).digest()
