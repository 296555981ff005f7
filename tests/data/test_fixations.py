"""The one rule that turns fixations into a map, and σ in degrees, against hand computation."""

import numpy as np
import pytest

from hagxai.data.fixations import fixation_map, pixels_per_degree, sigma_pixels


def test_pixels_per_degree_by_hand() -> None:
    # 1920 px over 53 cm seen from 60 cm: 2·60·tan(0.5°) = 1.04722 cm per degree.
    assert pixels_per_degree(1920, 53, 60) == pytest.approx(1.0472244 * 1920 / 53, rel=1e-6)
    assert sigma_pixels(sigma_deg=0.5, screen_px=1920, screen_cm=53, distance_cm=60) == (
        pytest.approx(0.5 * 37.93719, rel=1e-5)
    )


def test_fixation_map_matches_hand_computation(hand_map) -> None:
    points = [(2.0, 1.0), (5.5, 3.0)]
    got = fixation_map(np.array(points), 5, 7, sigma=1.5)
    np.testing.assert_allclose(got, hand_map(points, 5, 7, 1.5), rtol=1e-6, atol=1e-7)
    assert got[1, 2] == pytest.approx(1.0)


def test_fixation_map_is_max_normalised_and_counts_repeated_fixations() -> None:
    attention = fixation_map(np.array([[10.0, 20.0], [10.0, 20.0], [40.0, 5.0]]), 32, 48, 2.0)
    assert attention.shape == (32, 48) and attention.dtype == np.float32
    assert attention.max() == pytest.approx(1.0)
    assert np.unravel_index(attention.argmax(), attention.shape) == (20, 10)
    assert attention[5, 40] == pytest.approx(0.5, rel=1e-6)
    assert fixation_map(np.zeros((0, 2)), 8, 8, 1.0).max() == 0
