"""protocol/topics.py: one liveness topic per gateway process, and the pattern readers take."""

from __future__ import annotations

import pytest

from bandlink.protocol import ProtocolError, fields, topics


@pytest.mark.parametrize("gateway_id", ["gw-1", "gw-a", "G.7_x", "a", "z" * fields.READER_ID_MAX])
def test_a_gateway_state_topic_parses_back_to_its_id(gateway_id: str) -> None:
    topic = topics.gateway_state_topic(gateway_id)
    assert topic == "bl/1/$gw/" + gateway_id + "/state"
    assert topics.parse_gateway_state(topic) == gateway_id
    assert topics.parse(topic) is None  # never taken for a reader's topic


def test_readers_subscribe_to_every_gateways_state() -> None:
    assert topics.GATEWAY_STATES == "bl/1/$gw/+/state"
    assert not hasattr(topics, "GATEWAY_STATE")  # one shared liveness topic no more


@pytest.mark.parametrize(
    "gateway_id", ["", "z" * (fields.READER_ID_MAX + 1), "gw/1", "gw+", "#", "$gw", "gw 1", "gwé"]
)
def test_a_gateway_id_follows_the_reader_id_rules(gateway_id: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        topics.gateway_state_topic(gateway_id)
    assert raised.value.code == "bad_field"
    assert topics.parse_gateway_state("bl/1/$gw/" + gateway_id + "/state") is None


@pytest.mark.parametrize(
    "topic",
    [
        "bl/1/$gw/state",  # the old shared topic
        "bl/1/$gw//state",
        "bl/1/$gw/gw-1/state/x",
        "bl/1/$gw/gw-1/status",
        "bl/2/$gw/gw-1/state",
        "bl/1/gw-1/state",
        "bl/1/gate-1/res",
        "$share/gateway/bl/1/$gw/gw-1/state",
        "",
    ],
)
def test_other_topics_are_not_gateway_states(topic: str) -> None:
    assert topics.parse_gateway_state(topic) is None
