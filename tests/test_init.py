"""The top level: every exported name resolves, and ``import hagxai`` stays light."""

from __future__ import annotations

import subprocess
import sys

import hagxai


def test_every_exported_name_resolves() -> None:
    for name in hagxai.__all__:
        assert getattr(hagxai, name) is not None
    assert issubclass(hagxai.ClassifierAdapter, hagxai.ModelAdapter)


def test_import_does_not_load_models_or_the_api() -> None:
    heavy = "('hagxai.api', 'torchvision')"
    code = f"import sys, hagxai; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
