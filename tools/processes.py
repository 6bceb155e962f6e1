"""Child processes the tools start (broker, gateway, simulated readers), stopped the same way."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path


def read_log(path: Path) -> str:
    """A child's log so far ("" before it wrote one): for error messages and tests."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def stop_process(process: subprocess.Popen[bytes], grace: float = 1.0) -> None:
    """SIGTERM, wait, SIGTERM again (one was once lost right after a cold start), then SIGKILL.
    Returns once the process is reaped, so it holds no port afterwards."""
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    process.wait()
