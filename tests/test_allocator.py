"""``hagxai.allocator``: the mmap threshold is raised once per process, only where it can be and
only when the user has not chosen otherwise (each case in a fresh interpreter: the setting is
process-wide)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = "from hagxai.allocator import tune_malloc; print(tune_malloc(), tune_malloc())"


def _run(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "HAGXAI_MALLOC"))}
    clean.pop("LD_PRELOAD", None)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**clean, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc only",
)
def test_tuned_on_glibc_unless_the_user_chose_otherwise() -> None:
    assert _run() == "True True"
    assert _run(HAGXAI_MALLOC="default") == "False False"
    assert _run(MALLOC_MMAP_THRESHOLD_="131072") == "False False"


def test_the_command_line_tunes_it(monkeypatch) -> None:
    import hagxai.allocator as allocator
    from hagxai.cli import main

    calls = []
    monkeypatch.setattr("hagxai.cli.tune_malloc", lambda: calls.append(1) or True)
    assert main(["config", "show"]) == 0
    assert calls == [1]
    assert allocator.THRESHOLD == 2**31 - 1
