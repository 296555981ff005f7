"""ultralytics and yolov5 are imported offline and never write the user's global settings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
from hagxai.models.ultralytics_env import import_ultralytics
from hagxai.models.yolov5 import import_yolov5
from hagxai.models.demo import build_detector
import_ultralytics()
import_yolov5()
build_detector("yolov8n.yaml", 2)
"""


@pytest.mark.slow
def test_no_global_settings_are_written(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("YOLO_CONFIG_DIR", "YOLOV5_CONFIG_DIR", "XDG_CONFIG_HOME", "HAGXAI_CACHE")
    }
    env.update(HOME=str(tmp_path / "home"), HAGXAI_CACHE=str(tmp_path / "cache"))
    subprocess.run([sys.executable, "-c", SCRIPT], env=env, check=True, timeout=300)
    assert not (tmp_path / "home" / ".config" / "Ultralytics").exists()
    settings = tmp_path / "cache" / "ultralytics" / "Ultralytics"
    assert (settings / "Arial.ttf").exists()
