"""NXP AN12304's Leakage Resilient Primitive (LRP), the cipher of an NTAG 424 DNA in LRP mode,
built on AES from ``cryptography`` (no library implements LRP): the evaluation function, its
counter mode LRICB and CMAC-LRP. Checked against ../shared/vectors/an12304_lrp.json."""

from __future__ import annotations

from ..aes import BLOCK, ZERO_BLOCK, decrypt_block, double, encrypt_block, pad_block, xor

_UPPER = b"\x55" * BLOCK
_LOWER = b"\xaa" * BLOCK
_PLAINTEXTS = 16  # one per nibble value


class Lrp:
    """LRP under one key: its 16 plaintexts, and updated key ``updated`` (AN12304 2.1)."""

    def __init__(self, key: bytes, updated: int = 0) -> None:
        self.plaintexts = _chain(key, _UPPER, _PLAINTEXTS)
        self.updated_key = _chain(key, _LOWER, updated + 1)[updated]

    def eval(self, x: bytes, *, final: bool = True) -> bytes:
        """EvalLRP: walk the plaintexts by the nibbles of ``x``, high nibble first."""
        y = self.updated_key
        for byte in x:
            y = encrypt_block(y, self.plaintexts[byte >> 4])
            y = encrypt_block(y, self.plaintexts[byte & 0x0F])
        return encrypt_block(y, ZERO_BLOCK) if final else y

    def encrypt(self, counter: bytes, data: bytes) -> bytes:
        """LRICB without padding (``data`` is whole blocks): each block under the key the
        counter evaluates to, the counter incremented per block."""
        return b"".join(
            encrypt_block(self.eval(c), block)
            for c, block in zip(_counters(counter, len(data) // BLOCK), _blocks(data), strict=True)
        )

    def decrypt(self, counter: bytes, data: bytes) -> bytes:
        return b"".join(
            decrypt_block(self.eval(c), block)
            for c, block in zip(_counters(counter, len(data) // BLOCK), _blocks(data), strict=True)
        )

    def cmac(self, data: bytes) -> bytes:
        """CMAC-LRP: SP 800-38B CMAC with the block cipher replaced by EvalLRP."""
        k1 = double(self.eval(ZERO_BLOCK))
        blocks = _blocks(data) or [b""]
        last = blocks[-1]
        # A whole last block takes K1; a partial (or empty) one is padded and takes K2.
        whole = len(last) == BLOCK
        last = xor(last, k1) if whole else xor(pad_block(last), double(k1))
        y = ZERO_BLOCK
        for block in [*blocks[:-1], last]:
            y = self.eval(xor(y, block))
        return y


def _chain(key: bytes, start: bytes, count: int) -> list[bytes]:
    """AN12304's two generators, which differ only in their first step: h = AES_key(start)
    (55..55 for the plaintexts, AA..AA for the updated keys); then, count times, the next
    output is AES_h(AA..AA) and h becomes AES_h(55..55)."""
    h = encrypt_block(key, start)
    out = []
    for _ in range(count):
        out.append(encrypt_block(h, _LOWER))
        h = encrypt_block(h, _UPPER)
    return out


def _blocks(data: bytes) -> list[bytes]:
    return [data[i : i + BLOCK] for i in range(0, len(data), BLOCK)]


def _counters(counter: bytes, blocks: int) -> list[bytes]:
    """The counter and its successors for ``blocks`` blocks, wrapping at its own width."""
    width = len(counter)
    value = int.from_bytes(counter, "big")
    return [((value + i) % (1 << (8 * width))).to_bytes(width, "big") for i in range(blocks)]
