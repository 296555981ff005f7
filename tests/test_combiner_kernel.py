"""The combiner's hand-written hot path (hagxai.combiner_kernel) against autograd and the
reference order of operations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hagxai.combiner import HAGCombiner, _band, gaussian_factor
from hagxai.combiner_kernel import EAGER, LayerTerm, Resize, fold_band, nearest_source, phi
from hagxai.evidence import Evidence
from hagxai.losses import hag_loss

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def evidence(shapes, image_index, num_images, dtype=torch.float32, seed=1) -> Evidence:
    generator = torch.Generator().manual_seed(seed)
    index = torch.tensor(image_index, dtype=torch.long)
    acts = {n: torch.randn(num_images, *s, generator=generator, dtype=dtype) for n, s in shapes}
    grads = {n: torch.randn(len(index), *s, generator=generator, dtype=dtype) for n, s in shapes}
    return Evidence([n for n, _ in shapes], acts, grads, index, (32, 40))


def test_phi_is_bitwise_the_two_clamps() -> None:
    x = torch.randn(3, 4, 5, 6)
    x[0, 0, 0, :3] = 0.0
    for pos, neg in ((1.0, 1.0), (1.0, 0.0), (0.7, -0.3)):
        p, n = torch.tensor(pos), torch.tensor(neg)
        assert torch.equal(phi(x, p, n), p * x.clamp(min=0) + n * x.clamp(max=0))
    per_channel = torch.rand(1, 4, 1, 1), torch.rand(1, 4, 1, 1)
    expected = per_channel[0] * x.clamp(min=0) + per_channel[1] * x.clamp(max=0)
    assert torch.equal(phi(x, *per_channel), expected)


@pytest.mark.parametrize(
    ("size", "grid"), [((4, 5), (8, 10)), ((3, 7), (8, 10)), ((8, 10), (8, 10))]
)
def test_resize_matches_interpolate_and_folding_is_exact_maths(size, grid) -> None:
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    resize = Resize.make(size, grid, torch.device("cpu"))
    expected = F.interpolate(x, size=grid, mode="nearest")
    assert torch.equal(resize.up(x), expected)
    assert resize.blocks == (size != (3, 7))
    y = torch.randn(2, 3, *grid, dtype=torch.float64)  # down is the adjoint of up
    torch.testing.assert_close((resize.up(x) * y).sum(), (x * resize.down(y)).sum())
    taps = gaussian_factor(torch.tensor(2.0, dtype=torch.float64), 3)
    rows, cols = _band(taps, grid[0]), _band(taps, grid[1])
    folded_rows = fold_band(rows, nearest_source(size[0], grid[0], x.device), size[0])
    folded_cols = fold_band(cols, nearest_source(size[1], grid[1], x.device), size[1])
    torch.testing.assert_close(folded_rows @ x @ folded_cols.mT, rows @ expected @ cols.mT)


def _inputs(size, grid, fold, per_channel, dtype=torch.float64):
    generator = torch.Generator().manual_seed(0)
    channels = 3
    weighted = torch.randn(2, channels, *size, generator=generator, dtype=dtype)
    grads = torch.randn(5, channels, *size, generator=generator, dtype=dtype)
    shape = (1, channels, 1, 1) if per_channel else ()
    pos = torch.rand(shape, generator=generator, dtype=dtype) + 0.5
    neg = torch.rand(shape, generator=generator, dtype=dtype) - 0.5
    resize = Resize.make(size, grid, torch.device("cpu"))
    taps = gaussian_factor(torch.tensor(1.5, dtype=dtype), 2)
    rows, cols = _band(taps, grid[0]), _band(0.8 * taps, grid[1])
    if fold:
        rows = fold_band(rows, resize.rows, size[0])
        cols = fold_band(cols, resize.cols, size[1])
    index = torch.tensor([0, 1, 1, 0, 1])
    return weighted, grads, index, pos, neg, rows, cols, resize


def _autograd_term(weighted, grads, index, pos, neg, rows, cols, resize, fold):
    """The same term written with autograd-tracked library ops, the reference order."""
    x = pos * grads.clamp(min=0) + neg * grads.clamp(max=0)
    if not fold:
        x = F.interpolate(x, size=resize.grid, mode="nearest")
    smoothed = rows @ (x @ cols.mT)
    up = F.interpolate(weighted, size=resize.grid, mode="nearest")
    return (up.index_select(0, index) * smoothed).sum(1)


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize(("size", "chunk"), [((3, 4), 2), ((3, 5), 1), ((6, 8), None)])
def test_layer_term_gradcheck_and_autograd_parity(fold, per_channel, size, chunk) -> None:
    grid = (6, 8)
    weighted, grads, index, pos, neg, rows, cols, resize = _inputs(size, grid, fold, per_channel)
    tracked = [t.clone().requires_grad_(True) for t in (weighted, grads, pos, neg, rows, cols)]

    def term(w, g, p, n, r, c):
        return LayerTerm.apply(w, g, index, p, n, r, c, resize, chunk, None, fold, EAGER)

    assert torch.autograd.gradcheck(term, tuple(tracked), eps=1e-6, atol=1e-7)
    out = term(*tracked)
    upstream = torch.randn_like(out)
    got = torch.autograd.grad(out, tracked, upstream)
    library = [t.detach().clone().requires_grad_(True) for t in tracked]
    expected_out = _autograd_term(library[0], library[1], index, *library[2:], resize, fold)
    expected = torch.autograd.grad(expected_out, library, upstream)
    torch.testing.assert_close(out, expected_out)
    for name, a, b in zip(("weighted", "grads", "pos", "neg", "rows", "cols"), got, expected):
        torch.testing.assert_close(a, b, msg=lambda m, name=name: f"{name}: {m}")


def test_combiner_options_do_not_change_the_maps() -> None:
    shapes = [("fine", (3, 8, 10)), ("mid", (2, 4, 5)), ("odd", (2, 3, 7))]
    ev = evidence(shapes, [0, 1, 1, 0, 2], num_images=3)
    human = torch.rand(3, 16, 20)
    layers = [n for n, _ in shapes]
    reference = HAGCombiner(layers, layer_weights=True, channels={"fine": 3, "mid": 2, "odd": 2})
    with torch.no_grad():
        reference.grad_neg.fill_(0.2)
    hag_loss(reference(ev, (16, 20)), human).backward()
    for options in ({"chunk_targets": 1}, {"chunk_targets": None}, {"fold_resize": True}):
        other = HAGCombiner(**reference.options(), **options)
        other.load_state_dict(reference.state_dict())
        maps = other(ev, (16, 20))
        torch.testing.assert_close(maps, reference(ev, (16, 20)), rtol=0, atol=1e-5)
        hag_loss(maps, human).backward()
        for (name, a), b in zip(reference.named_parameters(), other.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-7, msg=name)


def test_combiner_gradcheck_folded_float64() -> None:
    from torch.func import functional_call

    ev = evidence([("a", (2, 4, 6)), ("b", (2, 2, 3))], [0, 0, 1], 2, dtype=torch.float64)
    combiner = HAGCombiner(
        ["a", "b"],
        radius=2,
        layer_weights=True,
        channels={"a": 2, "b": 2},
        learn_radius=True,
        fold_resize=True,
        chunk_targets=2,
    ).double()
    with torch.no_grad():
        combiner.grad_neg.fill_(0.2)
        combiner.grad_radius.fill_(1.7)
    names = [name for name, _ in combiner.named_parameters()]
    human = torch.rand(2, 6, 7, dtype=torch.float64)

    def loss(*params):
        maps = functional_call(combiner, dict(zip(names, params)), (ev, (6, 7)))
        return hag_loss(maps, human)

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in combiner.parameters())
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5)


def test_bad_run_time_options_are_refused() -> None:
    with pytest.raises(ValueError, match="chunk_targets"):
        HAGCombiner(chunk_targets=0)
    with pytest.raises(ValueError, match="smooth_dtype"):
        HAGCombiner(smooth_dtype=torch.float64)
    assert "chunk_targets" not in HAGCombiner(chunk_targets=3).options()


@cuda
def test_cuda_matches_cpu_and_bf16_smoothing_is_close() -> None:
    ev = evidence([("fine", (8, 16, 20)), ("coarse", (16, 8, 10))], [0, 1, 1, 2], 3)
    combiner = HAGCombiner(["fine", "coarse"], fold_resize=True)
    expected = combiner(ev, (32, 40))
    device = torch.device("cuda")
    on_gpu = HAGCombiner(["fine", "coarse"], fold_resize=True).to(device)
    torch.testing.assert_close(on_gpu(ev.to(device), (32, 40)).cpu(), expected, atol=1e-5, rtol=0)
    low = HAGCombiner(["fine", "coarse"], fold_resize=True, smooth_dtype=torch.bfloat16)
    maps = low.to(device)(ev.to(device), (32, 40))
    assert maps.dtype == torch.float32
    assert (maps.cpu() - expected).abs().max() < 0.05


@cuda
def test_cuda_training_step_does_not_synchronise() -> None:
    device = torch.device("cuda")
    ev = evidence([("fine", (8, 16, 20)), ("coarse", (16, 8, 10))], [0, 1, 1, 2], 3).to(device)
    human = torch.rand(3, 32, 40, device=device)
    for fold in (True, False):
        combiner = HAGCombiner(["fine", "coarse"], fold_resize=fold, chunk_targets=3).to(device)
        optimiser = torch.optim.Adam(combiner.parameters())
        combiner(ev, (32, 40), validate=False)  # first call makes the cached resize indices
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            optimiser.zero_grad(set_to_none=True)
            hag_loss(combiner(ev, (32, 40), validate=False), human).backward()
            optimiser.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
