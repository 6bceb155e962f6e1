"""Run the real MicroPython unix port on repository code.

The reader's files live in two folders: ``firmware/`` (the application) and ``protocol/`` (shared
with the gateway). On a board both sit at the root of the flash filesystem; here ``MICROPYPATH``
puts them on the interpreter's path the same way, so tests and simulated readers run the very
files a board would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"

# The smallest heap the whole reader is proven to run in; an ESP32 without PSRAM has ~100 KiB.
DEFAULT_HEAP = "64k"


def micropython_binary() -> str:
    """Path of the ``micropython`` command, preferring the one beside this interpreter (the venv)."""
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found is None:
        raise FileNotFoundError("micropython not found: install the dev extras (make venv)")
    return found


def micropython_env() -> dict[str, str]:
    """Environment in which ``import protocol`` and the firmware modules resolve as on a board."""
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([".frozen", str(FIRMWARE_DIR), str(REPO_ROOT)])
    return env


def micropython_command(*args: str, heap: str = DEFAULT_HEAP) -> list[str]:
    return [micropython_binary(), "-X", f"heapsize={heap}", *args]


def run_micropython(
    *args: str, heap: str = DEFAULT_HEAP, input: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """Run micropython to completion, capturing output; never raises on a non-zero exit."""
    return subprocess.run(
        micropython_command(*args, heap=heap),
        env=micropython_env(),
        cwd=REPO_ROOT,
        input=input,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
