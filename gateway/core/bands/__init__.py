"""Bands: the keys a band is personalised with, and the SUN message that proves each tap."""
