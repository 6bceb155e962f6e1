"""Payments: money in integer minor units, a double-entry ledger, charges at pos readers,
guests' spending privileges and PINs (docs/LEDGER.md)."""
