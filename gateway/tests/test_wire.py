"""The gateway's C encoder writes exactly the bytes the portable codec (and so the reader)
would: for every message type, over hypothesis' whole message space."""

from __future__ import annotations

from hypothesis import given, settings

from bandlink.gateway.core import wire
from bandlink.protocol import Message, decode, encode
from bandlink.protocol.examples import examples
from bandlink.protocol.tests.strategies import any_message


@settings(max_examples=500)
@given(any_message)
def test_the_c_encoder_writes_the_portable_bytes(message: Message) -> None:
    assert wire.encode(message) == encode(message)


def test_every_example_round_trips_through_the_c_encoder() -> None:
    named: list[tuple[str, Message]] = examples()  # type: ignore[no-untyped-call]
    for name, message in named:
        frame = wire.encode(message)
        assert frame == encode(message), name
        assert decode(frame).to_wire() == message.to_wire()
