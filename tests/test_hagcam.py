"""HAGCAM side by side with pytorch-grad-cam 1.5.7 on one random-init resnet18 and one batch.

Which equality holds, and why:

* pytorch-grad-cam has no class named FullGrad-CAM++. The HAG-XAI paper's FullGrad-CAM++,
  ``ReLU(Σ_c ReLU(G_c)·A_c)``, is pytorch-grad-cam's ``LayerCAM`` (its ``FullGrad`` is another
  method, built on bias gradients, and is not compared). hagxai's ``fullgradcam++`` explainer is
  the same map.
* At the combiner's identity setting (``grad_s = map_s = 0``: both kernels become exactly the
  unit impulse, as ``exp(-u²/1e-5)`` underflows to 0 for ``u ≠ 0``; φ_a identity and φ_g ReLU
  are the initial slopes) and one target per image, the combiner's map on the grid is
  ``c·M + d`` with ``M`` the FullGrad-CAM++ map and ``c > 0`` (its sum normalisation and
  min-max with ``+1e-5``). Bilinear resizing is linear and keeps constants, so after HAGCAM's
  final per-image min-max the map equals LayerCAM's (min-max at the grid, cv2 bilinear resize,
  min-max) and hagxai's ``fullgradcam++`` (torch bilinear resize, min-max) up to float rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam import LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from hagxai import HAGCAM, ClassifierAdapter, explainers
from hagxai import ClassifierOutputTarget as OwnTarget
from hagxai.combiner import HAGCombiner
from hagxai.errors import UserError
from hagxai.evidence import extract_evidence
from hagxai.export import CombinerMismatchError, save_combiner
from hagxai.models import TargetSpec, model_digest

SIZE = 96


def identity_combiner() -> HAGCombiner:
    """The combiner at its identity setting: no smoothing, φ_a identity, φ_g ReLU."""
    combiner = HAGCombiner()
    with torch.no_grad():
        combiner.grad_s.zero_()
        combiner.map_s.zero_()
    return combiner


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return model, x


def test_identity_setting_equals_pytorch_grad_cam_layercam(setup) -> None:
    model, x = setup
    targets = [ClassifierOutputTarget(3), ClassifierOutputTarget(5)]
    ours = HAGCAM(model, [model.layer4], combiner=identity_combiner())(x, targets)
    with LayerCAM(model=model, target_layers=[model.layer4]) as cam:
        theirs = cam(input_tensor=x, targets=targets)
    assert ours.shape == theirs.shape == (2, SIZE, SIZE)
    assert ours.dtype == np.float32
    assert ours.min() == 0.0 and ours.max() == pytest.approx(1.0)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_identity_setting_equals_hagxai_fullgradcam_plusplus(setup) -> None:
    model, x = setup
    ours = HAGCAM(model, [model.layer4], combiner=identity_combiner())(
        x, [ClassifierOutputTarget(3), ClassifierOutputTarget(5)]
    )
    # The adapter normalises inside; mean 0, std 1 hands x to the model as HAGCAM does.
    adapter = ClassifierAdapter(model, "resnet18", (SIZE, SIZE), mean=(0, 0, 0), std=(1, 1, 1))
    evidence = extract_evidence(adapter, x, TargetSpec(labels=[[3], [5]]), ["layer4"]).evidence
    reference = explainers.get("fullgradcam++")(evidence, (SIZE, SIZE)).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_targets_mean_what_pytorch_grad_cam_means(setup) -> None:
    model, x = setup
    cam = HAGCAM(model, [model.layer4])
    predicted = model(x).argmax(dim=1).tolist()
    default = cam(x)
    explicit = cam(x, [ClassifierOutputTarget(c) for c in predicted])
    own = cam(x, [OwnTarget(c) for c in predicted])
    np.testing.assert_array_equal(default, explicit)
    np.testing.assert_array_equal(own, explicit)
    # another class is another map: the target reaches the gradients
    other = cam(x, [ClassifierOutputTarget((c + 1) % 10) for c in predicted])
    assert np.abs(other - explicit).max() > 1e-3
    # the untrained combiner smooths: not LayerCAM's map, but the same range and shape
    assert default.shape == (2, SIZE, SIZE) and default.min() >= 0.0 and default.max() <= 1.0


def test_several_targets_per_image_and_per_target_maps(setup) -> None:
    model, x = setup
    cam = HAGCAM(model, [model.layer4], combiner=identity_combiner())
    groups = [[ClassifierOutputTarget(3), ClassifierOutputTarget(7)], ClassifierOutputTarget(5)]
    per_target = cam(x, groups, per_target=True)
    assert per_target.shape == (3, SIZE, SIZE)
    single = cam(x, [ClassifierOutputTarget(7), ClassifierOutputTarget(5)])
    np.testing.assert_allclose(per_target[1], single[0], atol=1e-5)
    np.testing.assert_allclose(per_target[2], single[1], atol=1e-5)
    combined = cam(x, groups)
    assert combined.shape == (2, SIZE, SIZE)


def test_combiner_folder_is_checked_against_model_and_layers(setup, tmp_path) -> None:
    model, x = setup
    folder = save_combiner(
        HAGCombiner(["layer4"]),
        tmp_path / "combiner",
        model_digest=model_digest(model),
        input_size=(SIZE, SIZE),
    )
    maps = HAGCAM(model, [model.layer4], combiner=folder)(x, [ClassifierOutputTarget(1)] * 2)
    assert maps.shape == (2, SIZE, SIZE)
    with pytest.raises(CombinerMismatchError, match="layers"):
        HAGCAM(model, [model.layer3], combiner=folder)
    torch.manual_seed(1)  # other weights than the fixture's model (seeded 0)
    other = torchvision.models.resnet18(num_classes=10)
    with pytest.raises(CombinerMismatchError, match="digest"):
        HAGCAM(other, [other.layer4], combiner=folder)
    with pytest.raises(UserError, match="input size"):
        HAGCAM(model, [model.layer4], combiner=folder)(torch.rand(1, 3, 64, 64))


def test_readme_hagcam_example_runs(capsys) -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### A learned head where pytorch-grad-cam is used\n", 1)[1]
    exec(re.search(r"```python\n(.*?)```", section, re.S).group(1), {})
    assert capsys.readouterr().out.strip() == "(2, 224, 224) float32"
