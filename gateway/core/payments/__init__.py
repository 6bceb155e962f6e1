"""Payments at the gateway: what a pos reader sends beyond a tap (the PIN block)."""
