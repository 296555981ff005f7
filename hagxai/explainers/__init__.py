"""Baseline explainers by name: ``get(name)(evidence, out_size) -> Tensor[B, H, W]`` in [0, 1].

Gradient methods (the Grad-CAM family, :mod:`hagxai.explainers.cam`) and sanity maps
(:mod:`hagxai.explainers.sanity`) are pure functions of :class:`~hagxai.evidence.Evidence`.
RISE and D-RISE need the model in the loop: see :mod:`hagxai.explainers.perturbation`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import partial

from torch import Tensor

from hagxai.errors import cut_list
from hagxai.evidence import Evidence
from hagxai.explainers import sanity
from hagxai.explainers.cam import METHODS, cam

Explainer = Callable[[Evidence, tuple[int, int]], Tensor]

_SANITY: dict[str, Callable[..., Tensor]] = {
    "centre_bias": sanity.centre_bias,
    "uniform_random": sanity.uniform_random,
    "human": sanity.human,
    "box_prior": sanity.box_prior,
}
PERTURBATION = ("rise", "drise")


def available() -> list[str]:
    """Names :func:`get` accepts."""
    return [*METHODS, *_SANITY]


def get(name: str, **options) -> Explainer:
    """The explainer called ``name``, with ``options`` bound (e.g. ``human_maps=`` for ``human``,
    ``boxes=`` for ``box_prior``).

    Raises:
        KeyError: an unknown name, with the closest known names; RISE / D-RISE point to
            :func:`hagxai.explainers.perturbation.perturbation_maps`.
    """
    key = name.lower()
    if key in METHODS:
        return partial(cam, method=key, **options)
    if key in _SANITY:
        return partial(_SANITY[key], **options)
    if key in PERTURBATION:
        raise KeyError(
            f"{name!r} needs the model in the loop: use "
            "hagxai.explainers.perturbation.perturbation_maps(adapter, x, targets)"
        )
    close = difflib.get_close_matches(key, [*available(), *PERTURBATION], n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"unknown explainer {name!r}{hint} (known: {cut_list(available(), 8)})")
