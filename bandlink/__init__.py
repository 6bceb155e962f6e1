"""bandlink: open firmware and gateway for NFC wristbands and readers.

This folder only anchors the import package. Its subpackages are the repository's top-level
folders, mapped by pyproject.toml: ``bandlink.protocol`` is ``protocol/``, ``bandlink.gateway`` is
``gateway/``, ``bandlink.tools`` is ``tools/``. The firmware is not part of the distribution; it
runs on the reader.
"""

__version__ = "0.1.0"
