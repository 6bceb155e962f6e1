# The reason-code registry: why a reader lit the way it did. Codes travel on the wire (a result
# carries one); names are for logs, APIs and tests. Codes are never renumbered or reused; a reader
# that meets a code it does not know still shows the decision and the text that came with it.

OK = 0
UNKNOWN_BAND = 1
BAND_BLOCKED = 2
NO_VALID_TICKET = 3
ALREADY_INSIDE = 4
NOT_INSIDE = 5  # an exit with no entry on record: granted, because exits are never blocked
UNKNOWN_READER = 6
WRONG_ROLE = 7
NO_REPLY = 8  # reader-local: no answer before the deadline, the guest is asked to tap again

NAMES = {
    OK: "ok",
    UNKNOWN_BAND: "unknown_band",
    BAND_BLOCKED: "band_blocked",
    NO_VALID_TICKET: "no_valid_ticket",
    ALREADY_INSIDE: "already_inside",
    NOT_INSIDE: "not_inside",
    UNKNOWN_READER: "unknown_reader",
    WRONG_ROLE: "wrong_role",
    NO_REPLY: "no_reply",
}
CODES = {name: code for code, name in NAMES.items()}


def name(code: int) -> str:
    return NAMES.get(code, "reason_%d" % code)
