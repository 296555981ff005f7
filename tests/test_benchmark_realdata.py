"""``benchmarks/realdata_head.py`` needs the real development set, which a clone lacks: without it
the script says so and exits 0 (no test uses the real set)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_realdata_benchmark_skips_a_missing_set(tmp_path) -> None:
    missing = tmp_path / "no-realdata"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "realdata_head.py"), str(missing)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "skipping" in done.stdout and str(missing) in done.stdout
