# Protocol errors are values with stable codes, never crashes: a peer that sends garbage gets it
# logged, counted and dropped at the one receive entry point (STYLE.md, after h11).
#
# The codes are part of the contract (SPEC.md); add new ones, never rename or reuse one.

MALFORMED = "malformed"  # not well-formed CBOR: truncated, reserved values, stray break...
UNSUPPORTED = "unsupported"  # well-formed CBOR outside the wire subset: floats, tags, indefinite
TOO_LARGE = "too_large"  # past the message size limit
TOO_DEEP = "too_deep"  # nesting past the depth limit
TRAILING = "trailing"  # bytes left after the one top-level item
INVALID = "invalid"  # well-formed but not valid CBOR: a map with a repeated key
BAD_FIELD = "bad_field"  # a message field missing, of the wrong type or out of range
UNKNOWN_TYPE = "unknown_type"  # a message type this side does not know
BAD_VERSION = "bad_version"  # a protocol major version this side does not speak


class ProtocolError(Exception):
    """A message could not be encoded or decoded; ``code`` is one of the stable codes above."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code + (": " + detail if detail else ""))
        self.code = code
        self.detail = detail
