"""`./ops/test` with pytest arguments of one's own (`./ops/test -q`, `./ops/test tests/unit`) still
leaves the slow load/chaos tests out; a `-m` of one's own decides instead (`./ops/test -m slow`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SLOW_FILE = "tests/acceptance/test_chaos.py"  # bounded chaos tests by default, full ones marked slow


def _collected(*args: str) -> tuple[int, int]:
    result = subprocess.run(
        ["sh", "ops/test", SLOW_FILE, "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    found = re.search(r"(\d+)/(\d+) tests collected \((\d+) deselected\)", result.stdout)
    assert found, result.stdout + result.stderr
    return int(found[1]), int(found[3])


def test_slow_tests_stay_out_unless_a_marker_is_given() -> None:
    default_kept, default_left_out = _collected()
    slow_kept, slow_left_out = _collected("-m", "slow")
    assert default_left_out == slow_kept > 0
    assert slow_left_out == default_kept > 0
    assert _collected("-mslow") == (slow_kept, slow_left_out)
