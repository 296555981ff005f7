import numpy as np
import pytest

from hagxai.config import ObserverConfig
from hagxai.data import observer as obs
from hagxai.data.synthetic import classification_scene, detection_scene


@pytest.fixture(scope="module")
def looked_at() -> tuple[list, list, ObserverConfig]:
    cfg = ObserverConfig()
    rng = np.random.default_rng(11)
    scenes = [classification_scene(rng, 112, 4, 3) for _ in range(40)]
    fixations = [obs.simulate(s, cfg, rng) for s in scenes]
    return scenes, fixations, cfg


def test_share_of_fixations_on_objects_is_in_the_documented_range(looked_at) -> None:
    scenes, fixations, _ = looked_at
    counts = [obs.fixation_shares(s, f) for s, f in zip(scenes, fixations)]
    total = sum(c["total"] for c in counts)
    on_object = sum(c["on_object"] for c in counts) / total
    on_part = sum(c["on_part"] for c in counts) / total
    # The object and part components hold 70% of the mixture; centre-bias and exploratory looks
    # land on the object now and then, and object looks spill past its box.
    assert 0.6 <= on_object <= 0.85
    # Parts cover ~2% of the image area, yet draw about a quarter of all looks.
    assert 0.2 <= on_part <= 0.4


def test_every_viewer_looks_within_the_count_range(looked_at) -> None:
    _, fixations, cfg = looked_at
    for fix in fixations:
        assert set(np.unique(fix.viewer)) == set(range(cfg.viewers))
        per_viewer = np.bincount(fix.viewer)
        assert per_viewer.min() >= cfg.fixations_min and per_viewer.max() <= cfg.fixations_max
        assert (fix.duration >= 80).all()


def test_map_sigma_is_a_share_of_the_longer_side() -> None:
    assert obs.map_sigma_px(ObserverConfig(map_sigma=0.05), 80, 120) == pytest.approx(6.0)


def test_viewers_agree_far_more_than_maps_of_other_images(looked_at) -> None:
    _, fixations, cfg = looked_at
    stats = obs.consistency(fixations, 112, 112, obs.map_sigma_px(cfg, 112, 112))
    assert stats["loo_cc"] > 2 * stats["shuffled_cc"]
    assert stats["loo_cc"] > 0.35
    assert stats["loo_nss"] > stats["shuffled_nss"] + 1.0


def test_detection_scenes_have_one_to_four_objects() -> None:
    rng = np.random.default_rng(0)
    counts = [len(detection_scene(rng, 160, 4, 3).objects) for _ in range(40)]
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) >= 3
