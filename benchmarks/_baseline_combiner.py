# Frozen copy of hagxai/combiner.py before issue #11 (git f2e431c), the baseline that
# benchmarks/train_epoch.py times against the new implementation in the same run. Not part of
# the package; do not edit or reformat it.
"""The HAG-XAI combiner: a learned explanation head over a model's activations and gradients.

Reference mode is the authors' maths exactly (DESIGN.md, "The combiner — exact maths"). For
target ``o`` of image ``i`` with activations ``A`` (of its image) and gradients ``G`` (of its
score), both ``C×h×w`` on the common grid::

    φ(x; p, n) = p·max(x, 0) + n·min(x, 0)
    K(amp, s)[u, v] = amp · exp(-(u² + v²) / (2·|s| + 1e-5)),   u, v ∈ [-r, r]
    M_o = ReLU( Σ_layers Σ_c φ(A; a⁺, a⁻) · (K(amp_g, s_g) ⊛ φ(G; g⁺, g⁻)) )
    N_o = M_o / (w_obj · Σ_xy M_o + 1e-5)
    S_i = K(amp_m, s_m) ⊛ Σ_{o ∈ i} N_o
    S_i = (S_i − min S_i) / (max S_i − min S_i + 1e-5), bilinear (half-pixel centres) to out_size

Convolutions are depthwise with zero 'same' padding. Every layer's ``A`` and ``G`` are first
resized (nearest) to the finest hooked layer's grid (largest ``h·w``). With several layers the
per-layer channel sums are added before the ReLU, as if the layers' channels were stacked into one
layer; their weights are 1 unless the ``layer_weights`` extension learns them.

The Gaussian is separable, ``K = (amp·g(u)) · g(v)`` with ``g(u) = exp(-u² / (2|s| + 1e-5))``, so
each smoothing runs as two 1-D convolutions. Each 1-D convolution is a product with a banded
(Toeplitz) matrix, which holds the zero padding in its truncated band and runs as one matrix
multiply. Forward + backward on CPU that measured 10–50× faster than the dense 21×21 depthwise
convolution (the ratio moves with machine load) and ~2× faster than two depthwise 1-D convolutions
(``benchmarks/combiner.py``).

Extensions (off by default, so the reference mode stays exact): learnable per-layer weights,
per-channel slopes and a learnable soft kernel radius; the losses are in :mod:`hagxai.losses`.

Pure tensor code: it knows nothing of files (see :mod:`hagxai.export`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hagxai.evidence import Evidence

#: The reference layer's property names, in the order the reference lists them.
REFERENCE_KEYS = (
    "Alpha_act_pos",
    "Alpha_act_neg",
    "Alpha_grad_pos",
    "Alpha_grad_neg",
    "G_A_grad",
    "G_sigma_grad",
    "G_A_all",
    "G_sigma_all",
    "ObjW",
)

#: Reference property name -> parameter name of :class:`HAGCombiner`.
REFERENCE_TO_PARAMETER = {
    "Alpha_act_pos": "act_pos",
    "Alpha_act_neg": "act_neg",
    "Alpha_grad_pos": "grad_pos",
    "Alpha_grad_neg": "grad_neg",
    "G_A_grad": "grad_amp",
    "G_sigma_grad": "grad_s",
    "G_A_all": "map_amp",
    "G_sigma_all": "map_s",
    "ObjW": "obj_w",
}

#: What each parameter means (also written into exported cards).
PARAMETER_MEANING = {
    "act_pos": "a+: slope of phi_a on positive activations (init 1)",
    "act_neg": "a-: slope of phi_a on negative activations (init 1)",
    "grad_pos": "g+: slope of phi_g on positive gradients (init 1)",
    "grad_neg": "g-: slope of phi_g on negative gradients (init 0)",
    "grad_amp": "amp of the gradient kernel K(amp, s) (init 1)",
    "grad_s": "variance-like s of the gradient kernel: exp(-(u²+v²)/(2|s|+1e-5)) (init 3)",
    "map_amp": "amp of the final map kernel (init 1)",
    "map_s": "variance-like s of the final map kernel (init 3)",
    "obj_w": "w_obj: weight of a target map's sum in its normalisation M/(w_obj·ΣM+1e-5) (init 1)",
    "layer_weight": "extension: weight of each layer's channel sum, in `layers` order (init 1)",
    "grad_radius": "extension: soft radius of the gradient kernel's square window (init r+0.5)",
    "map_radius": "extension: soft radius of the final kernel's square window (init r+0.5)",
}

# Steepness of the soft window 1/(1+exp(-k·(ρ-|u|))) of the learnable-radius extension: at the
# initial ρ = r + 0.5 the outermost taps keep 98% of their weight, inner ones all of it.
_WINDOW_SHARPNESS = 8.0


def phi(x: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """Piecewise-linear ``pos·max(x, 0) + neg·min(x, 0)``.

    Args:
        x: any shape.
        pos, neg: slopes broadcastable to ``x`` (0-D, or ``1×C×1×1`` for per-channel slopes).

    Returns:
        A tensor shaped like ``x``. With ``pos = neg = 1`` it is ``x`` exactly, with ``pos = 1,
        neg = 0`` it is ``ReLU(x)`` exactly (one of the two terms is always zero).
    """
    return pos * x.clamp(min=0) + neg * x.clamp(max=0)


def gaussian_factor(s: Tensor, radius: int, window: Tensor | None = None) -> Tensor:
    """The 1-D factor ``g(u) = exp(-u² / (2|s| + 1e-5))`` for ``u = -r..r``.

    Args:
        s: 0-D variance-like width (not σ, not σ²/2).
        radius: ``r``; the kernel has ``2r+1`` taps.
        window: optional 0-D soft radius ``ρ``; multiplies the taps by
            ``sigmoid(8·(ρ - |u|))`` (the learnable-radius extension).

    Returns:
        ``2r+1`` taps in ``s``'s dtype; ``K[u, v] = amp·g(u)·g(v)`` is the reference's 2-D kernel.
    """
    u = torch.arange(-radius, radius + 1, device=s.device, dtype=s.dtype)
    taps = torch.exp(-(u * u) / (2 * s.abs() + 1e-5))
    if window is not None:
        taps = taps * torch.sigmoid(_WINDOW_SHARPNESS * (window - u.abs()))
    return taps


def _band(taps: Tensor, n: int) -> Tensor:
    """``n×n`` matrix ``B[i, j] = taps[j - i + r]`` (zero off the band): a 1-D 'same'
    cross-correlation with zero padding is ``B @ x`` along that axis."""
    radius = (taps.numel() - 1) // 2
    i = torch.arange(n, device=taps.device)
    offset = i[None, :] - i[:, None]
    inside = offset.abs() <= radius
    gathered = taps[(offset + radius).clamp(0, 2 * radius)]
    return torch.where(inside, gathered, gathered.new_zeros(()))


def separable_smooth(
    x: Tensor, amp: Tensor, s: Tensor, radius: int = 10, window: Tensor | None = None
) -> Tensor:
    """Depthwise ``K(amp, s) ⊛ x`` with zero 'same' padding, as two 1-D convolutions.

    Equal (up to rounding) to ``conv2d`` of every ``h×w`` plane with the dense ``(2r+1)²`` kernel
    ``amp·exp(-(u² + v²)/(2|s| + 1e-5))``; differentiable in ``x``, ``amp``, ``s`` and ``window``.

    Args:
        x: ``…×h×w``; every leading index is smoothed independently.
        amp: 0-D amplitude (applied to the horizontal factor).
        s: 0-D variance-like width.
        radius: kernel radius ``r``.
        window: optional 0-D soft radius (see :func:`gaussian_factor`).

    Returns:
        ``…×h×w``, like ``x``.
    """
    taps = gaussian_factor(s, radius, window)
    height, width = x.shape[-2:]
    rows = _band(taps, height)
    cols = _band(amp * taps, width)
    return rows @ (x @ cols.T)


class HAGCombiner(nn.Module):
    """The HAG-XAI head: ``(evidence, out_size) -> B×H×W`` saliency maps in ``[0, 1]``.

    Args:
        layers: hooked layer names the combiner is built for; evidence must hook exactly these
            (in any order). ``None`` accepts any layer set (the reference's single-layer head).
        radius: kernel radius ``r`` (the reference's 21×21 kernels have ``r = 10``).
        layer_weights: extension: learn one weight per layer (needs ``layers``).
        channels: extension: per-channel slopes; maps each layer to its channel count (needs
            ``layers``). ``None`` keeps the reference's four scalar slopes.
        learn_radius: extension: learn a soft square window ``ρ`` per kernel inside ``radius``.

    Parameters (0-D unless said): ``act_pos, act_neg, grad_pos, grad_neg`` (``ΣC`` with
    ``channels``, concatenated in ``layers`` order), ``grad_amp, grad_s, map_amp, map_s, obj_w``,
    and with the extensions ``layer_weight`` (``L``), ``grad_radius``, ``map_radius``.
    """

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        *,
        radius: int = 10,
        layer_weights: bool = False,
        channels: Mapping[str, int] | None = None,
        learn_radius: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(layers, str):
            raise TypeError("layers must be a sequence of layer names, not one string")
        self.layers = list(layers) if layers is not None else None
        if self.layers is not None and (not self.layers or len(set(self.layers)) != len(layers)):
            raise ValueError(f"layers must be distinct names, at least one; got {self.layers}")
        if int(radius) != radius or radius < 1:
            raise ValueError(f"radius must be a positive integer, got {radius!r}")
        if (layer_weights or channels is not None) and self.layers is None:
            raise ValueError("layer_weights and per-channel slopes need the combiner's layers")
        self.radius = int(radius)
        self.use_layer_weights = bool(layer_weights)
        self.learn_radius = bool(learn_radius)
        self.channels: dict[str, int] | None = None
        slope_shape: tuple[int, ...] = ()
        if channels is not None:
            if set(channels) != set(self.layers):
                raise ValueError(
                    f"channels names layers {sorted(channels)}, the combiner has {self.layers}"
                )
            self.channels = {name: int(channels[name]) for name in self.layers}
            slope_shape = (sum(self.channels.values()),)

        def scalar(value: float, shape: tuple[int, ...] = ()) -> nn.Parameter:
            return nn.Parameter(torch.full(shape, float(value)))

        self.act_pos = scalar(1.0, slope_shape)
        self.act_neg = scalar(1.0, slope_shape)
        self.grad_pos = scalar(1.0, slope_shape)
        self.grad_neg = scalar(0.0, slope_shape)
        self.grad_amp = scalar(1.0)
        self.grad_s = scalar(3.0)
        self.map_amp = scalar(1.0)
        self.map_s = scalar(3.0)
        self.obj_w = scalar(1.0)
        if self.use_layer_weights:
            self.layer_weight = scalar(1.0, (len(self.layers),))
        if self.learn_radius:
            self.grad_radius = scalar(self.radius + 0.5)
            self.map_radius = scalar(self.radius + 0.5)

    def options(self) -> dict:
        """The constructor's arguments, JSON-serialisable: ``HAGCombiner(**c.options())``
        rebuilds the same architecture."""
        return {
            "layers": self.layers,
            "radius": self.radius,
            "layer_weights": self.use_layer_weights,
            "channels": self.channels,
            "learn_radius": self.learn_radius,
        }

    @classmethod
    def from_reference(
        cls, values: Mapping[str, float], layers: Sequence[str] | None = None, **options
    ) -> HAGCombiner:
        """A combiner holding a trained reference layer's values.

        Args:
            values: the nine reference property names (:data:`REFERENCE_KEYS`) -> numbers.
            layers: as in the constructor.
            **options: other constructor options (extensions start from their defaults; per-channel
                slopes start with the reference value in every channel).

        Raises:
            ValueError: a missing or unknown key, or a value that is not a finite number.
        """
        missing = [key for key in REFERENCE_KEYS if key not in values]
        unknown = sorted(set(values) - set(REFERENCE_KEYS))
        if missing or unknown:
            raise ValueError(
                f"reference values: missing keys {missing}, unknown keys {unknown}; "
                f"expected exactly {list(REFERENCE_KEYS)}"
            )
        combiner = cls(layers, **options)
        with torch.no_grad():
            for key, name in REFERENCE_TO_PARAMETER.items():
                value = values[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"reference value {key} = {value!r} is not a number")
                if not math.isfinite(value):
                    raise ValueError(f"reference value {key} = {value!r} is not finite")
                getattr(combiner, name).fill_(float(value))
        return combiner

    def reference_values(self) -> dict[str, float]:
        """The nine reference values (the inverse of :meth:`from_reference`).

        Raises:
            ValueError: with per-channel slopes, which the reference cannot express.
        """
        if self.channels is not None:
            raise ValueError("per-channel slopes have no reference equivalent")
        return {
            key: float(getattr(self, name).detach()) for key, name in REFERENCE_TO_PARAMETER.items()
        }

    def _check(self, evidence: Evidence, validate: bool) -> list[str]:
        """Check ``evidence`` against this combiner (and its shapes and values when ``validate``);
        return the layers in combining order."""
        if self.layers is not None and set(evidence.layers) != set(self.layers):
            raise ValueError(
                f"combiner was built for layers {self.layers}, the evidence hooks "
                f"{list(evidence.layers)}"
            )
        if validate:
            evidence.validate()
        layers = self.layers if self.layers is not None else list(evidence.layers)
        if self.channels is not None:
            for name in layers:
                found = int(evidence.acts[name].shape[1])
                if found != self.channels[name]:
                    raise ValueError(
                        f"layer {name!r}: combiner has per-channel slopes for "
                        f"{self.channels[name]} channels, the evidence has {found}"
                    )
        return layers

    def _dtype(self) -> torch.dtype:
        # float64 only when the module was made float64 (gradcheck); otherwise float32 even under
        # autocast, as exponentials, sums and the +1e-5 normalisations lose too much in half.
        return torch.float64 if self.obj_w.dtype == torch.float64 else torch.float32

    def _param(self, name: str, dtype: torch.dtype) -> Tensor:
        return getattr(self, name).to(dtype)

    def target_maps(
        self, evidence: Evidence, *, normalised: bool = True, validate: bool = True
    ) -> Tensor:
        """Per-target maps on the common grid, before the per-image sum.

        Args:
            evidence: ``T`` targets over ``B`` images (see :class:`~hagxai.evidence.Evidence`).
            normalised: return ``N_o = M_o / (w_obj·ΣM_o + 1e-5)``; ``False`` returns ``M_o``.
            validate: check shapes and finiteness (skip only for evidence checked before); the
                layer set is always checked.

        Returns:
            ``T×h×w`` on the finest hooked layer's grid, float32 (float64 for a float64 module).

        Raises:
            ValueError: NaN or inf in the evidence, bad shapes, or a layer set that differs from
                the combiner's.
        """
        layers = self._check(evidence, validate)
        with torch.autocast(evidence.image_index.device.type, enabled=False):
            return self._target_maps(evidence, layers, normalised)

    def _target_maps(self, evidence: Evidence, layers: list[str], normalised: bool) -> Tensor:
        dtype = self._dtype()
        grid = max((tuple(evidence.acts[name].shape[-2:]) for name in layers), key=math.prod)
        index = evidence.image_index
        window = self._param("grad_radius", dtype) if self.learn_radius else None
        grad_amp, grad_s = self._param("grad_amp", dtype), self._param("grad_s", dtype)
        total: Tensor | None = None
        start = 0
        for number, name in enumerate(layers):
            acts = evidence.acts[name].to(dtype)
            grads = evidence.grads[name].to(dtype)
            if tuple(acts.shape[-2:]) != grid:
                acts = F.interpolate(acts, size=grid, mode="nearest")
                grads = F.interpolate(grads, size=grid, mode="nearest")
            slopes = [self._param(n, dtype) for n in ("act_pos", "act_neg", "grad_pos", "grad_neg")]
            if self.channels is not None:
                width = self.channels[name]
                slopes = [p[start : start + width].view(1, -1, 1, 1) for p in slopes]
                start += width
            weighted = phi(acts, slopes[0], slopes[1])
            smoothed = separable_smooth(
                phi(grads, slopes[2], slopes[3]), grad_amp, grad_s, self.radius, window
            )
            term = (weighted.index_select(0, index) * smoothed).sum(1)
            if self.use_layer_weights:
                term = self._param("layer_weight", dtype)[number] * term
            total = term if total is None else total + term
        maps = torch.relu(total)
        if not normalised:
            return maps
        obj_w = self._param("obj_w", dtype)
        return maps / (obj_w * maps.sum((1, 2), keepdim=True) + 1e-5)

    def forward(
        self, evidence: Evidence, out_size: tuple[int, int], *, validate: bool = True
    ) -> Tensor:
        """Saliency maps of every image.

        Args:
            evidence: ``T`` targets over ``B`` images.
            out_size: ``(H, W)`` of the maps (the human maps' size).
            validate: check shapes and finiteness (skip only for evidence checked before).

        Returns:
            ``B×H×W`` in ``[0, 1]``. An image without targets sums no maps: its map is all zeros
            before smoothing and stays all zeros (``0 / (0 + 1e-5)``), never NaN.

        Raises:
            ValueError: NaN or inf in the evidence, bad shapes, a layer set that differs from
                the combiner's, or a bad ``out_size``.
        """
        if len(out_size) != 2 or any(int(n) != n or n < 1 for n in out_size):
            raise ValueError(f"out_size must be two positive integers (H, W), got {out_size!r}")
        per_target = self.target_maps(evidence, validate=validate)
        with torch.autocast(per_target.device.type, enabled=False):
            dtype = per_target.dtype
            summed = per_target.new_zeros((evidence.num_images, *per_target.shape[1:]))
            summed = summed.index_add(0, evidence.image_index, per_target)
            window = self._param("map_radius", dtype) if self.learn_radius else None
            smoothed = separable_smooth(
                summed,
                self._param("map_amp", dtype),
                self._param("map_s", dtype),
                self.radius,
                window,
            )
            low = smoothed.amin((1, 2), keepdim=True)
            high = smoothed.amax((1, 2), keepdim=True)
            scaled = (smoothed - low) / (high - low + 1e-5)
            size = (int(out_size[0]), int(out_size[1]))
            resized = F.interpolate(
                scaled[:, None], size=size, mode="bilinear", align_corners=False
            )
        return resized[:, 0]
