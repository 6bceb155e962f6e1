# Every MQTT topic bandlink uses, in one place. Reader id = MQTT client id = broker username, so a
# single ACL pattern (bl/1/%u/#) confines each reader to its own subtree.

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
GATEWAY_STATE = PREFIX + GATEWAY + "/state"


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
