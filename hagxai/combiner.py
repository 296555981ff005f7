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

The per-layer, per-target work runs in :mod:`hagxai.combiner_kernel`: ``φ_a`` once per image on
the layer's own grid, targets in chunks of ``chunk_targets`` with a hand-written backward, and with
``fold_resize`` the nearest resize folded into the smoothing matrices.

Extensions (off by default, so the reference mode stays exact): learnable per-layer weights,
per-channel slopes, a learnable soft kernel radius and a stable parameterisation; the losses are
in :mod:`hagxai.losses`.

Why a stable parameterisation: the final min-max makes the map's amplitude matter only through
its ``+1e-5``, so ``amp_g``, ``amp_m``, ``w_obj`` and the slopes' common scale are nearly
scale-free; the MSE half of the loss shrinks the map by walking them, Adam moves them at about
``lr`` per step whatever their gradient, and when one crosses zero the map inverts. With
``parameterisation="stable"`` both normalisations are scale-free (``N_o = M_o / (w_obj·ΣM_o)``
and ``(S − min S) / (max S − min S)``, an all-zero map or an exactly constant one giving zeros),
so those scales are exactly redundant: ``amp_g``, ``amp_m`` and ``w_obj`` are fixed at 1 (buffers,
not learned), and the slopes ``a⁺``, ``g⁺`` and the layer weights are learned as logarithms
(``exp`` of the stored ``*_log`` number), so they stay positive and no step can invert the map.
``a⁻`` and ``g⁻`` stay free: their sign relative to the positive slope is what they mean.

Pure tensor code: it knows nothing of files (see :mod:`hagxai.export`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hagxai.combiner_kernel import (
    EAGER,
    Kernels,
    LayerTerm,
    Resize,
    compiled_kernels,
    fold_band,
    phi,
)
from hagxai.evidence import Evidence

__all__ = [
    "PARAMETER_MEANING",
    "REFERENCE_KEYS",
    "REFERENCE_TO_PARAMETER",
    "HAGCombiner",
    "gaussian_factor",
    "phi",
    "separable_smooth",
]

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
    "act_pos_log": "stable parameterisation: log of a+ (a+ = exp(act_pos_log) > 0, init 0)",
    "grad_pos_log": "stable parameterisation: log of g+ (g+ = exp(grad_pos_log) > 0, init 0)",
    "layer_weight_log": "stable parameterisation: log of each layer's weight (init 0)",
}

#: Parameterisations: ``reference`` is the authors' (exact); ``stable`` is scale-free (see above).
PARAMETERISATIONS = ("reference", "stable")
#: Values a stable combiner learns as logarithms, stored as ``<name>_log``.
_LOG_VALUES = ("act_pos", "grad_pos", "layer_weight")
#: Scales a stable combiner does not learn: with scale-free normalisations they change nothing.
_FIXED_SCALES = ("grad_amp", "map_amp", "obj_w")

# Steepness of the soft window 1/(1+exp(-k·(ρ-|u|))) of the learnable-radius extension: at the
# initial ρ = r + 0.5 the outermost taps keep 98% of their weight, inner ones all of it.
_WINDOW_SHARPNESS = 8.0


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
        parameterisation: ``"reference"`` (exact) or ``"stable"`` (extension: scale-free
            normalisations, fixed amplitudes, positive ``a⁺``, ``g⁺`` and layer weights learned
            as logarithms; see the module docstring). Read values with :meth:`value`.
        chunk_targets: targets whose per-channel work is held in memory at once, forward and
            backward (peak memory ~ ``chunk_targets·ΣC·H·W`` floats, a few per element); ``None``
            takes the whole batch at once. Speed only: the maps do not depend on it.
        smooth_dtype: run the gradient smoothing's matmuls in ``float16`` or ``bfloat16`` (a GPU
            speed option; the products and sums stay float32). ``None`` (default) keeps the
            reference mode exact.
        compile_kernels: run the per-chunk work through :func:`torch.compile` (off by default:
            see ``benchmarks/train_epoch.py`` for when it pays).

        fold_resize: smooth a coarser layer's gradients on its own grid with the nearest resize
            folded into the smoothing matrices, instead of upsampling them first: the same
            maths (matrix products re-associated), ~3× fewer operations and ~3× less memory at
            the 64/128/256-channel 60×80/30×40/15×20 layers of a YOLOv5n, but float32 rounding
            that differs from the reference's order by ~1e-6 relative (each as close to a
            float64 evaluation as the other). Off by default so the reference order is kept.

    The last four are run-time settings, not part of the architecture: :meth:`options` and
    exported cards leave them out.

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
        parameterisation: str = "reference",
        chunk_targets: int | None = 8,
        smooth_dtype: torch.dtype | None = None,
        compile_kernels: bool = False,
        fold_resize: bool = False,
    ) -> None:
        super().__init__()
        if parameterisation not in PARAMETERISATIONS:
            raise ValueError(
                f"parameterisation must be one of {PARAMETERISATIONS}, got {parameterisation!r}"
            )
        self.parameterisation = parameterisation
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
        if chunk_targets is not None and (int(chunk_targets) != chunk_targets or chunk_targets < 1):
            raise ValueError(
                f"chunk_targets must be a positive integer or None, got {chunk_targets!r}"
            )
        if smooth_dtype not in (None, torch.float16, torch.bfloat16):
            raise ValueError(
                f"smooth_dtype must be None, float16 or bfloat16, got {smooth_dtype!r}"
            )
        self.chunk_targets = None if chunk_targets is None else int(chunk_targets)
        self.smooth_dtype = smooth_dtype
        self.compile_kernels = bool(compile_kernels)
        self.fold_resize = bool(fold_resize)
        self._compiled: Kernels | None = None
        self._resizes: dict[tuple, Resize] = {}
        self.channels: dict[str, int] | None = None
        slope_shape: tuple[int, ...] = ()
        if channels is not None:
            if set(channels) != set(self.layers):
                raise ValueError(
                    f"channels names layers {sorted(channels)}, the combiner has {self.layers}"
                )
            self.channels = {name: int(channels[name]) for name in self.layers}
            slope_shape = (sum(self.channels.values()),)

        stable = parameterisation == "stable"

        def scalar(name: str, value: float, shape: tuple[int, ...] = ()) -> None:
            data = torch.full(shape, float(value))
            if stable and name in _LOG_VALUES:
                setattr(self, f"{name}_log", nn.Parameter(torch.log(data)))
            elif stable and name in _FIXED_SCALES:
                self.register_buffer(name, data)
            else:
                setattr(self, name, nn.Parameter(data))

        scalar("act_pos", 1.0, slope_shape)
        scalar("act_neg", 1.0, slope_shape)
        scalar("grad_pos", 1.0, slope_shape)
        scalar("grad_neg", 0.0, slope_shape)
        scalar("grad_amp", 1.0)
        scalar("grad_s", 3.0)
        scalar("map_amp", 1.0)
        scalar("map_s", 3.0)
        scalar("obj_w", 1.0)
        if self.use_layer_weights:
            scalar("layer_weight", 1.0, (len(self.layers),))
        if self.learn_radius:
            scalar("grad_radius", self.radius + 0.5)
            scalar("map_radius", self.radius + 0.5)

    def value(self, name: str) -> Tensor:
        """The value a parameter takes in the maths (``exp`` of the stored logarithm for the
        stable parameterisation's positive values), e.g. ``value("act_pos")``."""
        if self.parameterisation == "stable" and name in _LOG_VALUES:
            return torch.exp(getattr(self, f"{name}_log"))
        return getattr(self, name)

    @torch.no_grad()
    def set_value(self, name: str, value: float) -> None:
        """Set every element of ``name`` to ``value`` in the maths' terms (see :meth:`value`).

        Raises:
            ValueError: a non-positive value for a stable combiner's positive parameter.
        """
        if self.parameterisation == "stable" and name in _LOG_VALUES:
            if not value > 0:
                raise ValueError(f"{name} = {value!r}: a stable combiner keeps it positive")
            getattr(self, f"{name}_log").fill_(math.log(value))
        else:
            getattr(self, name).fill_(float(value))

    def options(self) -> dict:
        """The constructor's arguments, JSON-serialisable: ``HAGCombiner(**c.options())``
        rebuilds the same architecture."""
        return {
            "layers": self.layers,
            "radius": self.radius,
            "layer_weights": self.use_layer_weights,
            "channels": self.channels,
            "learn_radius": self.learn_radius,
            "parameterisation": self.parameterisation,
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
        for key, name in REFERENCE_TO_PARAMETER.items():
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"reference value {key} = {value!r} is not a number")
            if not math.isfinite(value):
                raise ValueError(f"reference value {key} = {value!r} is not finite")
            combiner.set_value(name, float(value))
        return combiner

    def reference_values(self) -> dict[str, float]:
        """The nine reference values (the inverse of :meth:`from_reference`).

        Raises:
            ValueError: with per-channel slopes or the stable parameterisation, which the
                reference cannot express.
        """
        if self.channels is not None:
            raise ValueError("per-channel slopes have no reference equivalent")
        if self.parameterisation != "reference":
            raise ValueError("the stable parameterisation has no reference equivalent")
        return {
            key: float(self.value(name).detach()) for key, name in REFERENCE_TO_PARAMETER.items()
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
        return self.value(name).to(dtype)

    def _normalise_targets(self, maps: Tensor, obj_w: Tensor) -> Tensor:
        """``N_o`` from ``T×h×w`` maps ``M_o``: ``/(w_obj·ΣM + 1e-5)`` in reference mode,
        ``/(w_obj·ΣM)`` (zeros where ``ΣM = 0``) in the stable parameterisation."""
        total = maps.sum((1, 2), keepdim=True)
        if self.parameterisation == "reference":
            return maps / (obj_w * total + 1e-5)
        positive = total > 0
        return torch.where(positive, maps / (obj_w * torch.where(positive, total, 1.0)), 0.0)

    def _min_max(self, smoothed: Tensor) -> Tensor:
        """Per image ``(S − min S) / (max S − min S + 1e-5)``; the stable parameterisation drops
        the ``1e-5`` (an exactly constant map gives zeros)."""
        low = smoothed.amin((1, 2), keepdim=True)
        span = smoothed.amax((1, 2), keepdim=True) - low
        if self.parameterisation == "reference":
            return (smoothed - low) / (span + 1e-5)
        varies = span > 0
        return torch.where(varies, (smoothed - low) / torch.where(varies, span, 1.0), 0.0)

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
        device = index.device
        window = self._param("grad_radius", dtype) if self.learn_radius else None
        taps = gaussian_factor(self._param("grad_s", dtype), self.radius, window)
        # The smoothing matrices on the common grid; each layer folds them onto its own grid.
        band_rows = _band(taps, grid[0])
        band_cols = _band(self._param("grad_amp", dtype) * taps, grid[1])
        kernels = self._kernels()
        total: Tensor | None = None
        start = 0
        for number, name in enumerate(layers):
            # Stored evidence may be float16/bfloat16: upcast per batch, here.
            acts = evidence.acts[name].to(dtype)
            grads = evidence.grads[name].to(dtype)
            size = tuple(acts.shape[-2:])
            resize = self._resize(size, grid, device)
            slopes = [self._param(n, dtype) for n in ("act_pos", "act_neg", "grad_pos", "grad_neg")]
            if self.channels is not None:
                width = self.channels[name]
                slopes = [p[start : start + width].view(1, -1, 1, 1) for p in slopes]
                start += width
            # φ_a once per image, on the layer's own grid: φ commutes with a nearest resize.
            weighted = phi(acts, slopes[0], slopes[1])
            term = LayerTerm.apply(
                weighted,
                grads,
                index,
                slopes[2],
                slopes[3],
                fold_band(band_rows, resize.rows, size[0]) if self.fold_resize else band_rows,
                fold_band(band_cols, resize.cols, size[1]) if self.fold_resize else band_cols,
                resize,
                self.chunk_targets,
                self.smooth_dtype,
                self.fold_resize,
                kernels,
            )
            if self.use_layer_weights:
                term = self._param("layer_weight", dtype)[number] * term
            total = term if total is None else total + term
        maps = torch.relu(total)
        if not normalised:
            return maps
        return self._normalise_targets(maps, self._param("obj_w", dtype))

    def _kernels(self) -> Kernels:
        if not self.compile_kernels:
            return EAGER
        if self._compiled is None:
            self._compiled = compiled_kernels()
        return self._compiled

    def _resize(self, size: tuple[int, int], grid: tuple[int, int], device: torch.device) -> Resize:
        # Made once per shape and device: making one reads indices back to the host (a sync).
        key = (size, grid, str(device))
        if key not in self._resizes:
            self._resizes[key] = Resize.make(size, grid, torch.device("cpu")).to(device)
        return self._resizes[key]

    def grid_maps(self, evidence: Evidence, *, validate: bool = True) -> Tensor:
        """The maps of :meth:`forward` before its final resize, on the finest hooked layer's grid.

        ``forward(evidence, size)`` is exactly ``F.interpolate(grid_maps(evidence)[:, None],
        size, mode="bilinear", align_corners=False)[:, 0]``; the trainer computes the reference
        loss on this grid (:func:`hagxai.losses.hag_losses_upsampled`).

        Returns:
            ``B×h×w`` in ``[0, 1]``.
        """
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
            return self._min_max(smoothed)

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
        scaled = self.grid_maps(evidence, validate=validate)
        with torch.autocast(scaled.device.type, enabled=False):
            size = (int(out_size[0]), int(out_size[1]))
            resized = F.interpolate(
                scaled[:, None], size=size, mode="bilinear", align_corners=False
            )
        return resized[:, 0]
