"""Fixations turned into attention maps, as saliency benchmarks make them: one rule for all.

A map is the sum of one isotropic Gaussian per fixation, evaluated at every pixel and divided by
its maximum (so in [0, 1])::

    map[i, j] = Σ_f w_f · exp(-((j - x_f)² + (i - y_f)²) / (2σ²)),   w_f = 1 (or the duration)

with fixation ``(x, y)`` in image pixels (pixel ``(row i, column j)`` sits at ``x = j, y = i``).
σ is given in pixels, or in degrees of visual angle with the screen geometry. One degree at the
centre of the screen spans ``2·d·tan(0.5°)`` cm at viewing distance ``d`` cm, so::

    px_per_deg = 2 · d · tan(0.5°) · screen_px / screen_cm,    σ_px = σ_deg · px_per_deg

(the exact form; ``d · tan(1°)`` differs from it by under 0.01 %). Fixation coordinates are taken
to be in the pixels the image was shown at, one image pixel per screen pixel.
"""

from __future__ import annotations

import math

import numpy as np

from hagxai.errors import UserError


def pixels_per_degree(screen_px: float, screen_cm: float, distance_cm: float) -> float:
    """Screen pixels per degree of visual angle: ``2·d·tan(0.5°)·screen_px/screen_cm``.

    Args:
        screen_px: the screen's width in pixels.
        screen_cm: the screen's width in cm.
        distance_cm: the viewing distance in cm.
    """
    if min(screen_px, screen_cm, distance_cm) <= 0:
        raise UserError("screen_px, screen_cm and distance_cm must be positive")
    return 2.0 * distance_cm * math.tan(math.radians(0.5)) * screen_px / screen_cm


def sigma_pixels(
    sigma_px: float | None = None,
    sigma_deg: float | None = None,
    screen_px: float | None = None,
    screen_cm: float | None = None,
    distance_cm: float | None = None,
) -> float:
    """σ in pixels from exactly one of ``sigma_px`` or ``sigma_deg`` (with the screen geometry).

    Raises:
        UserError: neither or both given, or ``sigma_deg`` without the geometry.
    """
    if (sigma_px is None) == (sigma_deg is None):
        raise UserError("fixation maps need exactly one of sigma_px or sigma_deg")
    if sigma_px is not None:
        if sigma_px <= 0:
            raise UserError(f"sigma_px must be positive, got {sigma_px}")
        return float(sigma_px)
    if None in (screen_px, screen_cm, distance_cm):
        raise UserError("sigma_deg needs screen_px, screen_cm and distance_cm")
    if sigma_deg <= 0:
        raise UserError(f"sigma_deg must be positive, got {sigma_deg}")
    return float(sigma_deg) * pixels_per_degree(screen_px, screen_cm, distance_cm)


def fixation_map(
    xy: np.ndarray,
    height: int,
    width: int,
    sigma: float,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """The ``H×W`` float32 map of fixations ``xy`` (``M×2`` pixels), max-normalised.

    The Gaussian is evaluated exactly at every pixel (no truncation). It is separable, so the sum
    over fixations is one ``H×M`` by ``M×W`` matrix product. No fixation gives an all-zero map.
    """
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if len(xy) == 0:
        return np.zeros((height, width), np.float32)
    w = np.ones(len(xy)) if weights is None else np.asarray(weights, np.float64)
    cols = np.arange(width, dtype=np.float64)
    rows = np.arange(height, dtype=np.float64)
    gx = np.exp(-((cols[None, :] - xy[:, :1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((rows[None, :] - xy[:, 1:]) ** 2) / (2 * sigma**2))
    out = (gy * w[:, None]).T @ gx
    peak = out.max()
    return (out / peak if peak > 0 else out).astype(np.float32)
