"""A simulated observer: a documented generative model of where people look in a demo scene.

It knows the scene (objects, their diagnostic parts, distractors), never the model, so its maps
are no copy of any explanation method. For each of ``viewers`` simulated viewers:

1. the viewer's mixture weights ``w ~ Dirichlet(viewer_concentration · p)`` with
   ``p = (p_object, p_part, p_centre, p_explore)``, a personal spread factor
   ``f ~ LogNormal(0, 0.25)`` and a fixation count ``n ~ U{fixations_min..fixations_max}``;
2. each fixation picks a component from ``w``:

   - *object*: an object chosen with probability ∝ sqrt(area), position
     ``~ N(centre, (object_spread · f · (w, h))²)`` — spread proportional to object size;
   - *part*: an object's diagnostic part, ``~ N(part centre, (part_spread · f · part size)²)``;
   - *centre*: the centre bias, ``~ N(image centre, (centre_spread · (W, H))²)``;
   - *explore*: half uniform over the image, half on a random distractor (its centre, spread as an
     object's), so clutter draws some looks as it does for people;

3. positions are clipped to the image; durations are ``80 ms + Gamma(2, 110 ms)``.

The attention map is the project's one fixation map (:func:`hagxai.data.fixations.fixation_map`)
of all viewers' fixations: one Gaussian of std ``map_sigma × max(H, W)`` pixels per fixation,
evaluated at every pixel (zero outside the image), max-normalised to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hagxai.config import ObserverConfig
from hagxai.data.fixations import fixation_map, sigma_pixels
from hagxai.data.synthetic import Scene
from hagxai.metrics import plausibility


@dataclass
class Fixations:
    """Fixations of all viewers on one image: ``xy`` N×2 px, ``viewer`` N, ``duration`` N ms."""

    xy: np.ndarray
    viewer: np.ndarray
    duration: np.ndarray


def _centre_size(box) -> tuple[np.ndarray, np.ndarray]:
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2]), np.array([x2 - x1, y2 - y1])


def simulate(scene: Scene, cfg: ObserverConfig, rng: np.random.Generator) -> Fixations:
    """Draw every viewer's fixations on ``scene`` (see the module docstring for the model)."""
    h, w = scene.image.shape[:2]
    objects = scene.objects
    weights_obj = np.array([np.sqrt(np.prod(_centre_size(o.box)[1])) for o in objects])
    p = np.array([cfg.p_object, cfg.p_part, cfg.p_centre, cfg.p_explore])
    if not objects:
        p = np.array([0.0, 0.0, cfg.p_centre, cfg.p_explore + cfg.p_object + cfg.p_part])
    xy, viewer, duration = [], [], []
    for v in range(cfg.viewers):
        mix = rng.dirichlet(np.maximum(cfg.viewer_concentration * p, 1e-3))
        spread = rng.lognormal(0.0, 0.25)
        count = int(rng.integers(cfg.fixations_min, cfg.fixations_max + 1))
        for kind in rng.choice(4, size=count, p=mix):
            if kind in (0, 1):
                obj = objects[rng.choice(len(objects), p=weights_obj / weights_obj.sum())]
                box, scale = (
                    (obj.box, cfg.object_spread) if kind == 0 else (obj.part_box, cfg.part_spread)
                )
                centre, size = _centre_size(box)
                point = rng.normal(centre, scale * spread * size)
            elif kind == 2:
                point = rng.normal([w / 2, h / 2], cfg.centre_spread * np.array([w, h]))
            elif scene.distractors and rng.random() < 0.5:
                box = scene.distractors[rng.integers(len(scene.distractors))]
                centre, size = _centre_size(box)
                point = rng.normal(centre, cfg.object_spread * spread * size)
            else:
                point = rng.uniform([0, 0], [w, h])
            xy.append(np.clip(point, 0, [w - 1, h - 1]))
            viewer.append(v)
            duration.append(80.0 + rng.gamma(2.0, 110.0))
    return Fixations(
        xy=np.asarray(xy, dtype=np.float32).reshape(-1, 2),
        viewer=np.asarray(viewer, dtype=np.int32),
        duration=np.asarray(duration, dtype=np.float32),
    )


def map_sigma_px(cfg: ObserverConfig, height: int, width: int) -> float:
    """The observer's map σ in pixels: ``map_sigma × max(H, W)``."""
    return sigma_pixels(sigma_px=cfg.map_sigma * max(height, width))


def consistency(
    fixations: list[Fixations], height: int, width: int, sigma: float
) -> dict[str, float]:
    """Inter-observer consistency: the ceiling an explanation method is later measured against.

    ``loo_cc``/``loo_nss``: each viewer's map (fixations) against the map of all *other* viewers on
    the same image, averaged over viewers and images. ``shuffled_cc``/``shuffled_nss``: the same
    against another image's full map (the next image), the floor a scene-blind map reaches.
    CC and NSS are the project's metrics (:mod:`hagxai.metrics.plausibility`).
    """
    loo_cc, loo_nss = [], []
    for fix in fixations:
        viewers = np.unique(fix.viewer)
        own = [fix.xy[fix.viewer == v] for v in viewers]
        others = [fix.xy[fix.viewer != v] for v in viewers]
        other_maps = _stack([fixation_map(xy, height, width, sigma) for xy in others])
        own_maps = _stack([fixation_map(xy, height, width, sigma) for xy in own])
        loo_cc.append(plausibility.cc(other_maps, own_maps))
        loo_nss.append(plausibility.nss(other_maps, [torch.from_numpy(xy) for xy in own]))
    stats = {
        "loo_cc": float(torch.cat(loo_cc).nanmean()),
        "loo_nss": float(torch.cat(loo_nss).nanmean()),
        "shuffled_cc": float("nan"),
        "shuffled_nss": float("nan"),
    }
    if len(fixations) > 1:
        full = _stack([fixation_map(f.xy, height, width, sigma) for f in fixations])
        shifted = full.roll(-1, dims=0)
        stats["shuffled_cc"] = float(plausibility.cc(shifted, full).nanmean())
        points = [torch.from_numpy(f.xy) for f in fixations]
        stats["shuffled_nss"] = float(plausibility.nss(shifted, points).nanmean())
    return stats


def _stack(maps: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(maps))


def fixation_shares(scene: Scene, fix: Fixations) -> dict[str, int]:
    """Counts of fixations inside any object box, any part box, and in total."""

    def inside(boxes) -> np.ndarray:
        hit = np.zeros(len(fix.xy), dtype=bool)
        for x1, y1, x2, y2 in boxes:
            hit |= (
                (fix.xy[:, 0] >= x1)
                & (fix.xy[:, 0] <= x2)
                & (fix.xy[:, 1] >= y1)
                & (fix.xy[:, 1] <= y2)
            )
        return hit

    return {
        "on_object": int(inside([o.box for o in scene.objects]).sum()),
        "on_part": int(inside([o.part_box for o in scene.objects]).sum()),
        "total": len(fix.xy),
    }
