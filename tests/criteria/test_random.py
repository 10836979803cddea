"""Random pruning (book/methods.md: pathway criteria): per site (not global), remove floor(p/100 * size) uniformly
chosen neurons."""

from __future__ import annotations

import math

import pytest
import torch

import pathlib_pw as pw
from pathlib_pw import selection
from tests import nets
from tests import reference_impl as R
from tests.nets import single_thread  # noqa: F401  (autouse fixture)

P_VALUES = [0, 0.5, 10, 33.3, 50, 90, 99.9]


@pytest.mark.parametrize("net", [nets.tiny_cnn, nets.tiny_resnet, nets.tiny_relu6])
@pytest.mark.parametrize("p", P_VALUES)
def test_exact_count_per_site_and_image(net, p):
    model = net()
    x = nets.images(3)
    path = pw.extract_pathway(model, x, "random", p, seed=3)
    sizes = [m[0].numel() for m in path.masks]
    for b in range(3):
        for s, m in enumerate(path.masks):
            removed = int((~m[b]).sum())
            assert removed == math.floor(p / 100 * sizes[s]), f"site {s} image {b}"
        total_removed = sum(math.floor(p / 100 * n) for n in sizes)
        assert path.sparsity[b].item() == pytest.approx(100 * total_removed / sum(sizes), abs=1e-4)


def test_per_image_sparsity_counts():
    model = nets.tiny_cnn()
    ps = [5.0, 50.0, 95.0]
    path = pw.extract_pathway(model, nets.images(3), "random", ps, seed=0)
    for b, p in enumerate(ps):
        for m in path.masks:
            assert int((~m[b]).sum()) == math.floor(p / 100 * m[b].numel())


def test_not_global_differs_from_global_count():
    """Per site: the small fc site (10 neurons) loses exactly floor(p/10) neurons, whatever the scores."""
    path = pw.extract_pathway(nets.tiny_cnn(), nets.images(2), "random", 45, seed=1)
    assert [int((~m[0]).sum()) for m in path.masks] == [115, 43, 4]


def test_deterministic_for_a_seed_and_seeds_differ():
    model = nets.tiny_resnet()
    x = nets.images(3)
    a = pw.extract_pathway(model, x, "random", 50, seed=7)
    b = pw.extract_pathway(model, x, "random", 50, seed=7)
    c = pw.extract_pathway(model, x, "random", 50, seed=8)
    assert torch.equal(a.flat(), b.flat())
    assert not torch.equal(a.flat(), c.flat())
    # different images of one call get different paths (one generator per image)
    assert not torch.equal(a.flat()[0], a.flat()[1])
    # the default seed is deterministic too
    assert torch.equal(pw.extract_pathway(model, x, "random", 50).flat(), pw.extract_pathway(model, x, "random", 50).flat())


def test_chunked_equals_one_call():
    model = nets.tiny_resnet()
    x = nets.images(5)
    one = pw.extract_pathway(model, x, "random", 60, seed=11)
    for bs in (1, 2, 3):
        chunked = pw.extract_pathway(model, x, "random", 60, seed=11, batch_size=bs)
        assert torch.equal(one.flat(), chunked.flat()), bs
        assert torch.equal(one.sparsity, chunked.sparsity)


def test_per_image_seed_list_matches_single_image_calls():
    model = nets.tiny_cnn()
    x = nets.images(3)
    seeds = [101, 202, 303]
    batched = pw.extract_pathway(model, x, "random", 40, seed=seeds)
    for b in range(3):
        single = pw.extract_pathway(model, x[b : b + 1], "random", 40, seed=[seeds[b]])
        R.assert_masks_equal(R.batch_masks(batched, b), R.batch_masks(single, 0), f"image {b}")


@pytest.mark.parametrize("threads", [1, 3])
def test_draw_is_the_literal_per_image_randperm_sequence(threads):
    """Image b: one generator seeded with its seed; per site, in order, the first floor(p/100 size)
    entries of a randperm are removed. The same whether the images are drawn side by side or not."""
    model = nets.tiny_resnet()
    x = nets.images(4)
    seeds, ps = [5, 6, 7, 8], [10.0, 50.0, 90.0, 99.9]
    with selection.threads(threads):
        path = pw.extract_pathway(model, x, "random", ps, seed=seeds)
    for b in range(4):
        gen = torch.Generator().manual_seed(seeds[b])
        for s, m in enumerate(path.masks):
            size = m[b].numel()
            expected = torch.ones(size, dtype=torch.bool)
            removed = math.floor(ps[b] / 100 * size)
            for i in torch.randperm(size, generator=gen)[:removed].tolist():
                expected[i] = False
            assert torch.equal(m[b].flatten(), expected), f"image {b} site {s}"


def test_does_not_depend_on_scores_or_target():
    model = nets.tiny_cnn()
    x = nets.images(2)
    a = pw.extract_pathway(model, x, "random", 50, seed=5)
    b = pw.extract_pathway(model, x.flip(0), "random", 50, seed=5, target=3)
    assert torch.equal(a.flat(), b.flat())


def test_keep_frequency_is_uniform():
    """Over 400 per-image generators each neuron is kept with frequency ~ 1 - p/100."""
    model = nets.tiny_cnn()
    n = 400
    x = nets.images(1).expand(n, -1, -1, -1).contiguous()
    p = 30
    path = pw.extract_pathway(model, x, "random", p, seed=0)
    for m in path.masks:
        size = m[0].numel()
        freq = m.flatten(1).double().mean(0)
        expected = 1 - math.floor(p / 100 * size) / size
        # binomial std sqrt(.21 / 400) = 0.023: 7 sigma
        assert float((freq - expected).abs().max()) < 0.16
        assert float(freq.mean()) == pytest.approx(expected, abs=1e-9)
    # and the paths of different images are not all the same
    flat = path.flat()
    assert len({tuple(row.tolist()) for row in flat[:50]}) == 50


@pytest.mark.parametrize("seed", ["a", [1, 2]])
def test_bad_seed(seed):
    with pytest.raises((TypeError, ValueError), match="seed"):
        pw.extract_pathway(nets.tiny_cnn(), nets.images(3), "random", 50, seed=seed)
