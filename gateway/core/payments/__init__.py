"""Payments: money in integer minor units, a double-entry ledger, charges at pos readers,
guests' spending privileges and PINs, and the PIN block a pos reader seals (docs/LEDGER.md)."""
