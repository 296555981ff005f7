"""Reading a sample's files: a bad image is a clear ``DataError``."""

from pathlib import Path

import pytest

from hagxai.data.sample import read_image, read_image_size
from hagxai.errors import DataError


def test_bad_image_is_a_clear_error_even_after_ultralytics_patched_pil(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image
    from ultralytics.utils import patches

    # What importing ultralytics (or yolov5) does to the whole process.
    monkeypatch.setattr(Image, "open", patches.image_open)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"bad\.png: cannot be read as an image"):
        read_image(bad)
    with pytest.raises(DataError, match=r"bad\.png: cannot be read as an image"):
        read_image_size(bad)
    with pytest.raises(DataError, match=r"gone\.png: image file does not exist"):
        read_image_size(tmp_path / "gone.png")
