"""The combiner's hot path: one layer's ``Σ_c φ_a(A) · (K ⊛ φ_g(G))`` per target, fused and chunked.

For one layer with activations ``A`` (``B×C×h×w``, per image) and gradients ``G`` (``T×C×h×w``,
per target) on their own grid, and the common grid ``H×W`` (the finest hooked layer's), the
reference computes, per target ``t`` of image ``i(t)``::

    term_t = Σ_c up(φ_a(A_i))_c ⊙ (R · up(φ_g(G_t))_c · Cᵀ)          (T×H×W)

with ``up`` the nearest resize to ``H×W`` and ``R`` (``H×H``), ``C`` (``W×W``) the banded Toeplitz
matrices of the separable Gaussian (``amp`` folded into ``C``). Three facts make it cheap:

* A nearest resize is a 0/1 matrix on each axis, ``up(X) = U_h X U_wᵀ``, so
  ``R · up(X) · Cᵀ = (R U_h) · X · (C U_w)ᵀ``: the smoothing runs on the layer's own grid with the
  folded ``H×h`` and ``W×w`` matrices (:func:`fold_band`), never on an upsampled copy. For the
  64/128/256-channel layers at 60×80/30×40/15×20 of the issue's YOLOv5n set that is ~3× fewer
  multiply-adds and ~3× less memory than smoothing the upsampled gradients. Equal up to rounding
  (matrix products re-associated).
* ``φ`` is elementwise and a nearest resize copies values, so ``up(φ(A)) = φ(up(A))`` exactly;
  ``φ_a`` runs once per image at the layer's own resolution (the caller does it), and the
  upsampled activations are never materialised when the grid is an integer multiple (a broadcast
  view does it), else gathered per chunk.
* Autograd would keep every target's upsampled, smoothed gradients (``T×C×H×W`` per layer: 0.7 GB
  for 80 targets at the issue's shapes) for the backward pass. :class:`LayerTerm` keeps only its
  inputs and recomputes one chunk of ``chunk`` targets at a time in the backward, so peak memory
  is bounded by ``chunk``, not by the batch; the recompute costs one more smoothing, measured in
  ``benchmarks/train_epoch.py``.

Pure tensor code; no parameters of its own (:class:`hagxai.combiner.HAGCombiner` owns them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def phi(x: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """Piecewise-linear ``pos·max(x, 0) + neg·min(x, 0)``, the product and sum fused in one
    ``addcmul``.

    Args:
        x: any shape.
        pos, neg: slopes broadcastable to ``x`` (0-D, or ``1×C×1×1`` for per-channel slopes).

    Returns:
        A tensor shaped like ``x``, bitwise equal to ``pos·x.clamp(min=0) + neg·x.clamp(max=0)``:
        one of the two terms is always an exact zero, so even a fused multiply-add rounds once.
        ``torch.where`` with tensor slopes is 4–8× slower than this on the CPU (measured in
        ``benchmarks/train_epoch.py``, section ``phi``).
    """
    return torch.addcmul(pos * x.clamp(min=0), neg, x.clamp(max=0))


def nearest_source(size_in: int, size_out: int, device: torch.device) -> Tensor:
    """Source index of each output position of a nearest resize ``size_in -> size_out``.

    Taken from :func:`torch.nn.functional.interpolate` itself, so it is PyTorch's rule exactly.

    Returns:
        ``size_out`` long indices in ``[0, size_in)``.
    """
    ramp = torch.arange(size_in, device=device, dtype=torch.float64).view(1, 1, size_in)
    return F.interpolate(ramp, size=size_out, mode="nearest").view(size_out).long()


def fold_band(band: Tensor, source: Tensor, size_in: int) -> Tensor:
    """``band @ U`` for the 0/1 nearest-resize matrix ``U[i, k] = (source[i] == k)``.

    Args:
        band: ``N×N`` (a smoothing matrix on the common grid).
        source: ``N`` source indices (:func:`nearest_source`).
        size_in: the layer's own size along this axis.

    Returns:
        ``N×size_in``: smoothing a layer-grid signal with it equals upsampling then smoothing.
        Differentiable in ``band``.
    """
    return band.new_zeros(band.shape[0], size_in).index_add(1, source, band)


@dataclass(frozen=True)
class Resize:
    """How a layer's ``h×w`` grid maps to the common ``H×W`` grid (nearest).

    ``factor_h``/``factor_w`` are the integer factors when the resize is an exact block repeat
    (``source[i] = i // f``; then upsampling is a broadcast view), else 0 (then it is a gather
    with ``rows``/``cols``).
    """

    size: tuple[int, int]
    grid: tuple[int, int]
    rows: Tensor
    cols: Tensor
    factor_h: int
    factor_w: int

    @classmethod
    def make(cls, size: tuple[int, int], grid: tuple[int, int], device: torch.device) -> Resize:
        rows = nearest_source(size[0], grid[0], device)
        cols = nearest_source(size[1], grid[1], device)
        factors = []
        for n_in, n_out, source in ((size[0], grid[0], rows), (size[1], grid[1], cols)):
            factor = n_out // n_in if n_out % n_in == 0 else 0
            ramp = torch.arange(n_out, device=device)
            block = factor and torch.equal(source, ramp // factor)
            factors.append(factor if block else 0)
        return cls(size, grid, rows, cols, factors[0], factors[1])

    def to(self, device: torch.device) -> Resize:
        """The same mapping with its index tensors on ``device``."""
        rows, cols = self.rows.to(device), self.cols.to(device)
        return Resize(self.size, self.grid, rows, cols, self.factor_h, self.factor_w)

    @property
    def blocks(self) -> bool:
        return bool(self.factor_h and self.factor_w)

    def blocked(self, x: Tensor) -> Tensor:
        """``t×C×H×W`` (or ``t×1×H×W``) viewed as ``t×C×h×f_h×w×f_w`` (block-repeat case)."""
        h, w = self.size
        return x.view(x.shape[0], x.shape[1], h, self.factor_h, w, self.factor_w)

    def up(self, x: Tensor) -> Tensor:
        """Nearest resize of ``t×C×h×w`` to ``t×C×H×W`` (a broadcast view when blocks)."""
        if self.blocks:
            H, W = self.grid
            t, c, h, w = x.shape
            view = x[:, :, :, None, :, None].expand(t, c, h, self.factor_h, w, self.factor_w)
            return view.reshape(t, c, H, W)
        return x[:, :, self.rows][:, :, :, self.cols]

    def contract(self, weighted: Tensor, smoothed: Tensor) -> Tensor:
        """``Σ_c up(weighted) ⊙ smoothed``: ``t×C×h×w`` and ``t×C×H×W`` -> ``t×H×W``."""
        if self.blocks:
            product = self.blocked(smoothed) * weighted[:, :, :, None, :, None]
            return product.sum(1).view(smoothed.shape[0], *self.grid)
        return (self.up(weighted) * smoothed).sum(1)

    def down(self, x: Tensor) -> Tensor:
        """Adjoint of :meth:`up`: ``t×C×H×W`` -> ``t×C×h×w``, each source cell's copies summed."""
        h, w = self.size
        rows = _pool(x, 3, self.cols, w, self.factor_w)
        return _pool(rows, 2, self.rows, h, self.factor_h)

    def pool(self, upstream: Tensor, smoothed: Tensor) -> Tensor:
        """Adjoint of :meth:`contract` in ``weighted``: ``down(upstream ⊙ smoothed)``,
        ``t×H×W`` and ``t×C×H×W`` -> ``t×C×h×w``."""
        return self.down(smoothed * upstream[:, None])

    def spread(self, upstream: Tensor, weighted: Tensor) -> Tensor:
        """Adjoint of :meth:`contract` in ``smoothed``: ``upstream ⊙ up(weighted)``,
        ``t×H×W`` and ``t×C×h×w`` -> ``t×C×H×W``."""
        if self.blocks:
            product = self.blocked(upstream[:, None]) * weighted[:, :, :, None, :, None]
            return product.view(*weighted.shape[:2], *self.grid)
        return upstream[:, None] * self.up(weighted)


def _pool(x: Tensor, dim: int, source: Tensor, size: int, factor: int) -> Tensor:
    """Sum the copies a nearest resize made along ``dim`` back onto their ``size`` sources.

    A view and a sum when the resize repeats blocks of ``factor`` (nothing at all for 1): CPU
    ``index_add`` along an inner dimension is a slow serial loop (measured: most of a step).
    """
    if factor == 1:
        return x
    if factor:
        return x.unflatten(dim, (size, factor)).sum(dim + 1)
    shape = list(x.shape)
    shape[dim] = size
    return x.new_zeros(shape).index_add(dim, source, x)


def _expand(matrix: Tensor, batch: int) -> Tensor:
    """``matrix`` as a ``batch×…`` stride-0 view, so ``bmm`` runs without copies (``matmul`` of
    a 2-D by an N-D tensor transposes and copies its operands instead)."""
    return matrix.expand(batch, *matrix.shape)


def _spread(source: Tensor, images: Tensor, resize: Resize) -> Tensor:
    """``source[images][:, resize.cols]`` (``t×W×h×C``) in one gather, not two copies."""
    if resize.factor_w == 1:
        return source[images]
    return source[images[:, None], resize.cols[None, :]]


def upsampled_forward(
    weighted: Tensor,
    images: Tensor,
    grads: Tensor,
    pos: Tensor,
    neg: Tensor,
    rows: Tensor,
    cols: Tensor,
    resize: Resize,
    mm_dtype: torch.dtype | None,
) -> Tensor:
    """One chunk in the reference's order: ``Σ_c up(weighted) ⊙ (rows · up(φ(grads)) · colsᵀ)``.

    Args:
        weighted: ``B×C×h×w`` ``φ_a(A)`` per image.
        images: ``t`` long: each target's image.
        grads: ``t×C×h×w`` raw gradients.
        pos, neg: ``g⁺, g⁻`` (0-D or ``1×C×1×1``).
        rows, cols: ``H×H`` and ``W×W`` smoothing matrices on the common grid.
        resize: the layer's grid mapping.
        mm_dtype: dtype of the smoothing matmuls (``None``: the inputs' dtype).

    Returns:
        ``t×H×W``.
    """
    low = mm_dtype or grads.dtype
    x = resize.up(phi(grads, pos, neg)).to(low)
    t, c, H, W = x.shape
    z = (x.view(-1, W) @ cols.to(low).mT).view(t * c, H, W)
    smoothed = torch.bmm(_expand(rows.to(low), t * c), z).to(grads.dtype)
    return resize.contract(weighted[images], smoothed.view(t, c, H, W))


def upsampled_backward(
    upstream: Tensor,
    weighted: Tensor,
    images: Tensor,
    grads: Tensor,
    pos: Tensor,
    neg: Tensor,
    rows: Tensor,
    cols: Tensor,
    resize: Resize,
    mm_dtype: torch.dtype | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`upsampled_forward` given ``upstream`` (``t×H×W``).

    Returns:
        ``d_weighted`` (``t×C×h×w``, per target), ``d_x`` (``t×C×h×w``, the gradient of
        ``φ(grads)``), ``d_rows`` (``H×H``), ``d_cols`` (``W×W``).
    """
    low = mm_dtype or grads.dtype
    x = resize.up(phi(grads, pos, neg)).to(low)
    t, c, H, W = x.shape
    n = t * c
    z = (x.view(-1, W) @ cols.to(low).mT).view(n, H, W)
    smoothed = torch.bmm(_expand(rows.to(low), n), z).to(grads.dtype)
    d_weighted = resize.pool(upstream, smoothed.view(t, c, H, W))
    del smoothed
    d_smoothed = resize.spread(upstream, weighted[images]).to(low).view(n, H, W)
    d_rows = torch.bmm(d_smoothed, z.mT).sum(0)
    d_z = torch.bmm(_expand(rows.to(low).mT, n), d_smoothed)
    del d_smoothed
    d_cols = d_z.reshape(-1, W).mT @ x.reshape(-1, W)
    d_x = (d_z.reshape(-1, W) @ cols.to(low)).view(t, c, H, W)
    return d_weighted, resize.down(d_x.to(grads.dtype)), d_rows, d_cols


def contracted_forward(
    source: Tensor,
    images: Tensor,
    grads: Tensor,
    pos: Tensor,
    neg: Tensor,
    rows: Tensor,
    cols: Tensor,
    resize: Resize,
    mm_dtype: torch.dtype | None,
) -> Tensor:
    """One chunk with the resize folded and the channels contracted before the row smoothing.

    With ``Z_c = φ(G)_c · colsᵀ`` (``h×W``, columns already smoothed onto the common grid) and
    ``r(i)``, ``q(x)`` the nearest source row and column::

        term[i, x] = Σ_c A_c[r(i), q(x)] · Σ_k rows[i, k] Z_c[k, x]
                   = Σ_k rows[i, k] · V[x, r(i), k],   V[x, r, k] = Σ_c A_c[r, q(x)] Z_c[k, x]

    ``V`` (``W×h×h`` per target) is one batched matmul over ``x``; no per-channel tensor ever
    has the common grid's ``H×W`` size, which is where the reference's order spends its time
    (memory traffic) on a coarse, wide layer.

    Args:
        source: ``B×w×h×C``: ``φ_a(A)`` per image, channels last.
        images: ``t`` long: each target's image.
        grads: ``t×C×h×w`` raw gradients.
        pos, neg: ``g⁺, g⁻`` (0-D or ``1×C×1×1``).
        rows, cols: ``H×h`` and ``W×w`` folded smoothing matrices (:func:`fold_band`).
        resize: the layer's grid mapping.
        mm_dtype: dtype of the matmuls (``None``: the inputs' dtype).

    Returns:
        ``t×H×W``.
    """
    low = mm_dtype or grads.dtype
    t, c, h, w = grads.shape
    W = resize.grid[1]
    x = phi(grads, pos, neg).to(low)
    z = torch.bmm(_expand(cols.to(low), t), x.view(t, c * h, w).mT)  # t×W×(C·h)
    spread = _spread(source, images, resize).to(low)  # t×W×h×C
    v = torch.bmm(spread.view(t * W, h, c), z.view(t * W, c, h)).to(grads.dtype)
    v = v.view(t, W, h, h)
    gathered = v if resize.factor_h == 1 else v[:, :, resize.rows]  # t×W×H×h
    return (gathered * rows).sum(-1).transpose(1, 2)


def contracted_backward(
    upstream: Tensor,
    source: Tensor,
    images: Tensor,
    grads: Tensor,
    pos: Tensor,
    neg: Tensor,
    rows: Tensor,
    cols: Tensor,
    resize: Resize,
    mm_dtype: torch.dtype | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`contracted_forward` given ``upstream`` (``t×H×W``).

    Returns:
        ``d_source`` (``t×w×h×C``, per target), ``d_x`` (``t×C×h×w``, the gradient of
        ``φ(grads)``), ``d_rows`` (``H×h``), ``d_cols`` (``W×w``).
    """
    low = mm_dtype or grads.dtype
    t, c, h, w = grads.shape
    W = resize.grid[1]
    x = phi(grads, pos, neg).to(low)
    z = torch.bmm(_expand(cols.to(low), t), x.view(t, c * h, w).mT)  # t×W×(C·h)
    spread = _spread(source, images, resize).to(low).view(t * W, h, c)
    v = torch.bmm(spread, z.view(t * W, c, h)).to(grads.dtype).view(t, W, h, h)
    d_term = upstream.transpose(1, 2)[..., None]  # t×W×H×1
    gathered = v if resize.factor_h == 1 else v[:, :, resize.rows]  # t×W×H×h
    d_rows = (d_term * gathered).sum((0, 1))  # H×h
    per_row = d_term * rows  # t×W×H×h
    d_v = _pool(per_row, 2, resize.rows, h, resize.factor_h).to(low).reshape(t * W, h, h)
    d_spread = torch.bmm(d_v, z.view(t * W, c, h).mT).view(t, W, h, c)
    d_source = _pool(d_spread.to(source.dtype), 1, resize.cols, w, resize.factor_w)
    d_z = torch.bmm(spread.mT, d_v).view(t, W, c * h)
    d_cols = torch.bmm(d_z, x.view(t, c * h, w)).sum(0)
    d_x = torch.bmm(d_z.mT, _expand(cols.to(low), t)).view(t, c, h, w)
    return d_source, d_x.to(grads.dtype), d_rows, d_cols.to(grads.dtype)


def chunk_forward(
    weighted: Tensor,
    images: Tensor,
    grads: Tensor,
    pos: Tensor,
    neg: Tensor,
    rows: Tensor,
    cols: Tensor,
    resize: Resize,
    mm_dtype: torch.dtype | None,
    fold: bool,
) -> Tensor:
    """One chunk's ``t×H×W`` term: :func:`contracted_forward` when ``fold`` (``weighted`` is then
    ``B×w×h×C``), else :func:`upsampled_forward` (``weighted`` ``B×C×h×w``); ``images`` are the
    chunk's targets' images."""
    kernel = contracted_forward if fold else upsampled_forward
    return kernel(weighted, images, grads, pos, neg, rows, cols, resize, mm_dtype)


def chunk_backward(
    upstream: Tensor,
    weighted: Tensor,
    images: Tensor,
    grads: Tensor,
    pos: Tensor,
    neg: Tensor,
    rows: Tensor,
    cols: Tensor,
    resize: Resize,
    mm_dtype: torch.dtype | None,
    fold: bool,
    need_grads: bool,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of one chunk of :func:`chunk_forward` given ``upstream`` (``t×H×W``).

    Returns:
        ``d_weighted`` (per target, in ``weighted``'s layout), ``d_grads`` (``t×C×h×w``, or
        ``None`` unless ``need_grads``), ``d_pos`` and ``d_neg`` (shaped like ``pos`` and
        ``neg``), ``d_rows``, ``d_cols``.
    """
    kernel = contracted_backward if fold else upsampled_backward
    d_weighted, d_x, d_rows, d_cols = kernel(
        upstream, weighted, images, grads, pos, neg, rows, cols, resize, mm_dtype
    )
    # d/dpos of x·where(x > 0, pos, neg) is max(x, 0), d/dneg is min(x, 0) = x − max(x, 0)
    positive = grads.clamp(min=0)
    if pos.dim() == 0:
        d_pos = torch.vdot(d_x.flatten(), positive.flatten())
        d_neg = torch.vdot(d_x.flatten(), grads.flatten()) - d_pos
    else:
        d_pos = (d_x * positive).sum((0, 2, 3), keepdim=True)
        d_neg = (d_x * grads).sum((0, 2, 3), keepdim=True) - d_pos
    d_grads = d_x * torch.where(grads > 0, pos, neg) if need_grads else None
    return d_weighted, d_grads, d_pos, d_neg, d_rows.to(grads.dtype), d_cols.to(grads.dtype)


@dataclass
class Kernels:
    """The two chunk functions :class:`LayerTerm` calls (eager, or ``torch.compile``'d)."""

    forward: Callable[..., Tensor]
    backward: Callable[..., tuple]


EAGER = Kernels(chunk_forward, chunk_backward)


def compiled_kernels() -> Kernels:
    """``torch.compile``'d chunk functions (inductor fuses the elementwise passes around the
    matmuls). Compiled lazily on first call per shape."""
    return Kernels(torch.compile(chunk_forward), torch.compile(chunk_backward))


class LayerTerm(torch.autograd.Function):
    """``term_t = Σ_c up(weighted_{i(t)})_c ⊙ (rows · φ(G_t; pos, neg)_c · colsᵀ)``, ``T×H×W``.

    Hand-written because autograd would save every target's smoothed gradients (``T×C×H×W``) and
    more for the backward; this saves only the inputs and recomputes chunk by chunk (module
    docstring). Differentiable in ``weighted``, ``grads``, ``pos``, ``neg``, ``rows`` and ``cols``;
    checked with :func:`torch.autograd.gradcheck` in float64 in the tests.

    Args (of :meth:`apply`):
        weighted: ``B×C×h×w``: ``φ_a(A)`` per image on the layer's own grid.
        grads: ``T×C×h×w``: gradients per target on the layer's own grid.
        index: ``T`` long: the image of each target.
        pos, neg: ``g⁺, g⁻``: 0-D, or ``1×C×1×1`` per-channel.
        rows: ``H×h`` folded row smoothing matrix (:func:`fold_band`), or ``H×H`` unfolded.
        cols: ``W×w`` folded column smoothing matrix (``amp`` included), or ``W×W`` unfolded.
        resize: :class:`Resize` of this layer to the common grid.
        chunk: targets per chunk (``None``: all at once).
        mm_dtype: dtype of the smoothing matmuls (``None``: the inputs').
        fold: whether ``rows``/``cols`` are folded (see :func:`chunk_forward`).
        kernels: :data:`EAGER` or :func:`compiled_kernels`.
    """

    @staticmethod
    def forward(
        ctx,
        weighted: Tensor,
        grads: Tensor,
        index: Tensor,
        pos: Tensor,
        neg: Tensor,
        rows: Tensor,
        cols: Tensor,
        resize: Resize,
        chunk: int | None,
        mm_dtype: torch.dtype | None,
        fold: bool,
        kernels: Kernels,
    ) -> Tensor:
        count = grads.shape[0]
        step = count if chunk is None else max(1, int(chunk))
        # channels last for the contracted kernel; made once per image, not per target
        source = weighted.permute(0, 3, 2, 1).contiguous() if fold else weighted
        out = grads.new_empty(count, *resize.grid)
        for start in range(0, count, max(step, 1)):
            part = slice(start, start + step)
            out[part] = kernels.forward(
                source,
                index[part],
                grads[part],
                pos,
                neg,
                rows,
                cols,
                resize,
                mm_dtype,
                fold,
            )
        ctx.save_for_backward(source, grads, index, pos, neg, rows, cols)
        ctx.resize, ctx.step, ctx.mm_dtype, ctx.fold = resize, step, mm_dtype, fold
        ctx.kernels = kernels
        return out

    @staticmethod
    def backward(ctx, upstream: Tensor):  # type: ignore[override]
        source, grads, index, pos, neg, rows, cols = ctx.saved_tensors
        need_grads = ctx.needs_input_grad[1]
        # per-target gradients of the activations, added onto their images below: targets are
        # stored image by image, and index_add_ along the first axis is a row-wise add (the
        # accumulating index_put_ it replaces was ~5% of a step)
        d_source = torch.zeros_like(source)
        d_grads = torch.empty_like(grads) if need_grads else None
        d_pos, d_neg = torch.zeros_like(pos), torch.zeros_like(neg)
        d_rows, d_cols = torch.zeros_like(rows), torch.zeros_like(cols)
        upstream = upstream.contiguous()
        for start in range(0, grads.shape[0], max(ctx.step, 1)):
            part = slice(start, start + ctx.step)
            images = index[part]
            dw, dg, dp, dn, dr, dc = ctx.kernels.backward(
                upstream[part],
                source,
                images,
                grads[part],
                pos,
                neg,
                rows,
                cols,
                ctx.resize,
                ctx.mm_dtype,
                ctx.fold,
                need_grads,
            )
            d_source.index_add_(0, images, dw)
            if d_grads is not None:
                d_grads[part] = dg
            d_pos += dp
            d_neg += dn
            d_rows += dr
            d_cols += dc
        d_weighted = d_source.permute(0, 3, 2, 1) if ctx.fold else d_source
        return d_weighted, d_grads, None, d_pos, d_neg, d_rows, d_cols, None, None, None, None, None
