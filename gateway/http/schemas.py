"""The API's request and response bodies. Amounts are integers of minor units (cents):
``StrictInt`` refuses 4.5 and "450" alike, so no float ever reaches the ledger."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from ..core.payments.ledger import Transfer
from ..core.payments.operations import LABEL_MAX, LINES_MAX, REFERENCE_MAX
from ..core.payments.records import APPROVED, Charge, Posted

Minor = Annotated[StrictInt, Field(description="minor units (cents), > 0")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Line(_Body):
    text: Annotated[str, Field(min_length=1, max_length=LABEL_MAX)]
    amount: Minor


class ChargeIn(_Body):
    amount: Minor
    currency: Annotated[str, Field(min_length=3, max_length=3, examples=["EUR"])]
    reference: Annotated[str | None, Field(max_length=REFERENCE_MAX)] = None
    description: Annotated[
        str | None, Field(max_length=LABEL_MAX, description="what the reader shows")
    ] = None
    lines: Annotated[list[Line], Field(max_length=LINES_MAX)] = []


class RefundIn(_Body):
    amount: Annotated[Minor | None, Field(description="omitted: all that is left")] = None
    reference: Annotated[str | None, Field(max_length=REFERENCE_MAX)] = None


class TopUpIn(_Body):
    amount: Minor
    currency: Annotated[str, Field(min_length=3, max_length=3, examples=["EUR"])]
    reference: Annotated[str | None, Field(max_length=REFERENCE_MAX)] = None


class ChargingIn(_Body):
    """All three, every time (null where none): a field left out must not silently lift a
    limit or the PIN."""

    enabled: StrictBool
    daily_limit: Annotated[StrictInt | None, Field(ge=0, description="null: no daily limit")]
    pin_threshold: Annotated[
        StrictInt | None, Field(ge=0, description="a PIN is asked above this; null: never")
    ]


class PinIn(_Body):
    pin: Annotated[str, Field(pattern=r"^[0-9]{4,12}$")]


UidHex = Annotated[
    str,
    Field(pattern=r"^([0-9A-Fa-f]{2}){4,10}$", description="a band's UID in hex, 4 to 10 bytes"),
]


class BlockIn(_Body):
    reason: Literal["lost", "stolen", "damaged"]


class ReplaceIn(_Body):
    new_uid: UidHex
    reason: Literal["lost", "stolen", "damaged", "replaced"] = "replaced"
    security: Annotated[
        Literal["sun", "plain-uid"],
        Field(description="the new band's: plain-UID only if the venue chooses it for it"),
    ] = "sun"


class LoginIn(_Body):
    login: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class ProblemDetails(BaseModel):
    type: str
    title: str
    status: int
    detail: str


def charge_out(charge: Charge) -> dict[str, Any]:
    receipt = None
    if charge.state == APPROVED:
        receipt = {
            "id": charge.transfer_id,
            "lines": [{"text": text, "amount": amount} for text, amount in charge.lines],
            "total": charge.amount,
            "currency": charge.currency,
        }
    return {
        "id": charge.id.hex(),
        "reader": charge.reader_id,
        "outlet": charge.outlet,
        "amount": charge.amount,
        "currency": charge.currency,
        "reference": charge.reference,
        "label": charge.label,
        "state": charge.state,
        "reason": charge.reason,
        "guest": charge.guest_id,
        "refunded": charge.refunded,
        "receipt": receipt,
        "created_ms": charge.created_ms,
        "expires_ms": charge.expires_ms,
        "completed_ms": charge.completed_ms,
    }


def transfer_out(transfer: Transfer, delta: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": transfer.id,
        "kind": transfer.kind,
        "amount": transfer.amount,
        "currency": transfer.currency,
        "guest": transfer.guest_id,
        "charge": transfer.charge_id.hex() if transfer.charge_id else None,
        "reference": transfer.reference,
        "created_ms": transfer.created_ms,
    }
    if delta is not None:
        body["change"] = delta
    return body


def posted_out(posted: Posted) -> dict[str, Any]:
    return transfer_out(posted.transfer, posted.delta)
