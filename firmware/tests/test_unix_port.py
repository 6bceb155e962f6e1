"""Run every MicroPython test script (``mp_*.py`` here and in ``protocol/tests``) on the real
unix port, under the reader's heap limit, and fail with its output if any test in it fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from bandlink.tools.micropython import REPO_ROOT, run_micropython

SCRIPTS = sorted(
    [*Path(__file__).parent.glob("mp_*.py"), *(REPO_ROOT / "protocol" / "tests").glob("mp_*.py")]
)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_passes_on_micropython(script: Path) -> None:
    done = run_micropython(str(script.relative_to(REPO_ROOT)), timeout=120)
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output
    assert " passed, 0 failed" in output, output
