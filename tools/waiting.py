"""Waiting for state that arrives asynchronously (a retained message, a process's log line),
for tests and tools that drive real processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(action: Callable[[], T], done: Callable[[T], bool], timeout: float = 5) -> T:
    """Repeat ``action`` until ``done(result)`` or ``timeout`` seconds; the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = action()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.05)
