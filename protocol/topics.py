# Every MQTT topic bandlink uses, in one place. Reader id = MQTT client id = broker username, so a
# single ACL pattern (bl/1/%u/#) confines each reader to its own subtree.
#
# Each gateway process has its own liveness topic, bl/1/$gw/<gateway id>/state (retained, and its
# MQTT will): with several processes sharing the readers' traffic, one process's will must not
# tell the readers that the whole service is gone. Readers subscribe to all of them.

from .errors import ProtocolError
from .fields import reader_id as _valid_id

PREFIX = "bl/1/"
GATEWAY = "$gw"  # not a valid reader id: a reader can never publish as the gateway

EVT = "evt"  # reader -> gateway: taps, journal uploads, status
RES = "res"  # gateway -> reader: replies
BIRTH = "birth"
DEATH = "death"  # the reader's last will
CFG = "cfg"  # retained configuration
CMD = "cmd"  # commands to one reader

# MQTT 5 shared subscriptions: gateway processes in group "gateway" split the readers' traffic.
_SHARED = "$share/gateway/" + PREFIX + "+/"
EVENTS_SHARED = _SHARED + EVT
BIRTHS_SHARED = _SHARED + BIRTH
DEATHS_SHARED = _SHARED + DEATH
_GATEWAY_PREFIX = PREFIX + GATEWAY + "/"  # bl/1/$gw/
_STATE = "/state"
GATEWAY_STATES = _GATEWAY_PREFIX + "+" + _STATE  # every gateway's state: what readers subscribe to


def reader_topic(reader_id: str, kind: str) -> str:
    return PREFIX + reader_id + "/" + kind


def parse(topic: str):
    """Split ``bl/1/<reader>/<kind>`` into (reader, kind); None for any other topic."""
    if not topic.startswith(PREFIX):
        return None
    rest = topic[len(PREFIX) :]
    cut = rest.find("/")
    if cut <= 0 or "/" in rest[cut + 1 :]:
        return None
    return rest[:cut], rest[cut + 1 :]


def gateway_state_topic(gateway_id: str) -> str:
    """``bl/1/$gw/<gateway_id>/state``, the liveness topic of one gateway process. A gateway id
    follows the rules of a reader id; any other raises ProtocolError(bad_field)."""
    _valid_id("gateway id", gateway_id)
    return _GATEWAY_PREFIX + gateway_id + _STATE


def parse_gateway_state(topic: str):
    """The gateway id of ``bl/1/$gw/<gateway id>/state``; None for any other topic, and for a
    level that is not a valid gateway id (empty, too long, a character outside the set)."""
    if not (topic.startswith(_GATEWAY_PREFIX) and topic.endswith(_STATE)):
        return None
    gateway_id = topic[len(_GATEWAY_PREFIX) : len(topic) - len(_STATE)]
    try:
        return _valid_id("gateway id", gateway_id)
    except ProtocolError:
        return None
