# The reason-code registry: why a reader lit the way it did. Codes travel on the wire (a result
# carries one; an offline tap carries the reader's own); names are for logs, APIs and tests.
# Codes are never renumbered or reused. A reader that meets a code it does not know still shows
# the decision, the pattern and the text that came with it.

# Entry (gate role)
OK = 0
UNKNOWN_BAND = 1
BAND_BLOCKED = 2
NO_VALID_TICKET = 3
ALREADY_INSIDE = 4
NOT_INSIDE = 5  # an exit with no entry on record: granted, because exits are never blocked
# Readers and requests
UNKNOWN_READER = 6
WRONG_ROLE = 7
NO_REPLY = 8  # reader-local: no answer before the deadline, the guest is asked to tap again
STALE = 9  # the tap reached the gateway after its deadline; the reader has moved on
BAD_REQUEST = 10  # a frame the gateway could decode but not act on
INTERNAL_ERROR = 11
# Payments (pos role)
INSUFFICIENT_FUNDS = 12
PIN_REQUIRED = 13  # above the PIN threshold: tap again with the PIN entered
WRONG_PIN = 14
LIMIT_EXCEEDED = 15  # a party member's own spending limit
NOT_PERMITTED = 16  # the band may not charge (no charging privilege)
CHARGE_UNKNOWN = 17  # no open charge request with that id (cancelled, or never armed)
CHARGE_EXPIRED = 18
# Band authenticity (NTAG 424 DNA SUN)
BAD_MAC = 19  # SUN: the band's reading does not verify (a copied UID, a forged reading)
REPLAYED = 20  # SUN: the counter did not increase: a copied URL or a replayed read
# Offline decisions (the reader decided alone)
OFFLINE_LIST = 21  # granted: the band is on the reader's list
OFFLINE_NOT_LISTED = 22
OFFLINE_LIMIT = 23  # pos: above the floor limit or the band's offline cap
# The gateway's own state
BUSY = 24  # the gateway's queue is full: nothing was decided, tap again
# Readers and requests (continued)
WRONG_DIRECTION = 25  # a gate tap's direction or gate is not the reader's configured one
JOURNAL_FULL = 26  # reader-local: a till's journal is full, so it takes no offline sale

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
    STALE: "stale",
    BAD_REQUEST: "bad_request",
    INTERNAL_ERROR: "internal_error",
    INSUFFICIENT_FUNDS: "insufficient_funds",
    PIN_REQUIRED: "pin_required",
    WRONG_PIN: "wrong_pin",
    LIMIT_EXCEEDED: "limit_exceeded",
    NOT_PERMITTED: "not_permitted",
    CHARGE_UNKNOWN: "charge_unknown",
    CHARGE_EXPIRED: "charge_expired",
    BAD_MAC: "bad_mac",
    REPLAYED: "replayed",
    OFFLINE_LIST: "offline_list",
    OFFLINE_NOT_LISTED: "offline_not_listed",
    OFFLINE_LIMIT: "offline_limit",
    BUSY: "busy",
    WRONG_DIRECTION: "wrong_direction",
    JOURNAL_FULL: "journal_full",
}


def name(code: int) -> str:
    return NAMES.get(code, "reason_%d" % code)


def code(reason_name: str) -> int:
    for number, known in NAMES.items():
        if known == reason_name:
            return number
    raise KeyError(reason_name)
