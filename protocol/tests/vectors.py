"""Where the shared public test vectors live: ``../shared/vectors`` beside the repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2

VECTORS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "vectors"


def load_vectors(name: str) -> Any:
    return json.loads((VECTORS_DIR / name).read_text())


def appendix_a() -> list[dict[str, Any]]:
    examples: list[dict[str, Any]] = load_vectors("cbor_appendix_a.json")["examples"]
    return examples


def in_wire_subset(example: dict[str, Any]) -> bool:
    """Whether an Appendix A example lies in the wire subset, judged by cbor2 as the reference:
    a definite-length encoding (the file marks indefinite ones as not round-tripping) of ints within
    64 bits, strings, arrays, maps with int or text keys, booleans and null."""
    if not example["roundtrip"]:
        return False
    try:
        value = cbor2.loads(bytes.fromhex(example["hex"]))
    except cbor2.CBORDecodeError:
        return False
    return _subset_value(value)


def _subset_value(value: Any) -> bool:
    if value is None or isinstance(value, (bool, str, bytes)):
        return True
    if isinstance(value, int):
        return -(2**64) <= value < 2**64
    if isinstance(value, list):
        return all(_subset_value(v) for v in value)
    if isinstance(value, dict):
        keys_ok = all(isinstance(k, (int, str)) and not isinstance(k, bool) for k in value)
        return keys_ok and all(_subset_value(v) for v in value.values())
    return False
