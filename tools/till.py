"""``bandlink till charge``: what a till does, by hand. It asks for a charge at a pos reader
(under a fresh Idempotency-Key), then waits for the band and prints how it ended."""

from __future__ import annotations

import sys

from bandlink.gateway.core.payments.money import AmountError, format_amount, parse_amount

from .api import ApiClient


def charge(
    *,
    url: str,
    token: str | None,
    reader: str,
    amount: str,
    currency: str,
    description: str | None,
    wait_s: float,
) -> int:
    try:
        minor = parse_amount(amount, currency)
    except AmountError as err:
        print(f"bandlink till: {err}", file=sys.stderr)
        return 2
    if not token:
        print(
            "bandlink till: set BANDLINK_TOKEN or --token (bandlink token create)", file=sys.stderr
        )
        return 2
    client = ApiClient(url, token, timeout=wait_s + 10)
    body = {"amount": minor, "currency": currency, "description": description}
    created = client.move("POST", f"/v1/readers/{reader}/charges", body)
    if created.status != 201:
        print(f"refused ({created.status}): {created.body.get('detail')}", file=sys.stderr)
        return 1
    charge_id = created.body["id"]
    print(f"charge {charge_id}: {format_amount(minor, currency)} at {reader}; tap a band")
    done = client.call("GET", f"/v1/charges/{charge_id}?wait={wait_s:g}")
    state = done.body.get("state")
    if state == "pending":
        client.move("POST", f"/v1/charges/{charge_id}/cancel")
        print("no band within the wait: cancelled")
        return 1
    reason = done.body.get("reason")
    print(
        f"{state} ({reason})" + (f" guest {done.body['guest']}" if done.body.get("guest") else "")
    )
    receipt = done.body.get("receipt")
    if receipt:
        print(f"receipt {receipt['id']}")
    return 0 if state == "approved" else 1
