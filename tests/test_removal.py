"""pathlib_pw.removal: pixel removal (LeRF/MoRF, ROAR), ROAD's noisy linear imputation, removal curves, AUC."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathlib_pw import removal
from pathlib_pw.removal import (
    area_under_curve,
    fill_pixels,
    noisy_linear_imputation,
    pixel_removal_curve,
    removal_count,
    removal_masks,
    removal_order,
    remove_pixels,
)
from tests.nets import images, single_thread, tiny_cnn  # noqa: F401 (single_thread: an autouse fixture)
from tests.reference_impl import (
    removal_count_literal,
    removal_curve_literal,
    removal_order_literal,
    remove_pixels_literal,
    road_imputation_literal,
    tie_keys_literal,
)

PERCENTS = (0, 1, 10, 25, 50, 77, 99, 100)


def _tied_maps(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Maps quantized to the 5 levels -2..2: many exact ties, in magnitude and in sign."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-2, 3, (batch, height, width), generator=g).double() * 0.5


def _x(batch: int, channels: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------------------ order, masks, counts


TIE_RULES = [("first", 0), ("last", 0), ("random", 0), ("random", 3)]


@pytest.mark.parametrize("ties,tie_seed", TIE_RULES)
@pytest.mark.parametrize("ranking", ["magnitude", "signed"])
@pytest.mark.parametrize("order", ["most", "least"])
def test_removal_order_matches_sorted_with_ties(order, ranking, ties, tie_seed):
    maps = _tied_maps(3, 5, 7)
    maps[0, 0, :3] = torch.tensor([0.0, -0.0, 0.0])  # signed zeros tie too
    got = removal_order(maps, order, ranking=ranking, ties=ties, tie_seed=tie_seed)
    assert got.dtype == torch.long and got.shape == (3, 35)
    keys = tie_keys_literal(35, ties, tie_seed)
    for b in range(3):
        assert got[b].tolist() == removal_order_literal(maps[b], order, ranking, keys)


@pytest.mark.parametrize("ties,tie_seed", TIE_RULES)
@pytest.mark.parametrize("ranking", ["magnitude", "signed"])
@pytest.mark.parametrize("order", ["most", "least"])
def test_remove_pixels_matches_literal_with_ties(order, ranking, ties, tie_seed):
    x, maps = _x(3, 3, 6, 7), _tied_maps(3, 6, 7, seed=2)
    fill = [0.25, -1.5, 3.0]
    keys = tie_keys_literal(42, ties, tie_seed)
    for percent in PERCENTS:
        got = remove_pixels(x, maps, percent, order=order, fill=fill, ranking=ranking, ties=ties, tie_seed=tie_seed)
        for b in range(3):
            want = remove_pixels_literal(x[b], maps[b], percent / 100, order, fill, ranking, keys)
            assert torch.equal(got[b], want), (order, ranking, percent, b)


def test_tie_hand_cases():
    # flat indices: 0 1 / 2 3
    tie_high = torch.tensor([[[1.0, 3.0], [3.0, 0.0]]])
    assert removal_masks(tie_high, 25, order="most", ties="first").tolist() == [[[False, True], [False, False]]]
    assert removal_order(tie_high, "most", ties="first").tolist() == [[1, 2, 0, 3]]
    assert removal_order(tie_high, "most", ties="last").tolist() == [[2, 1, 0, 3]]
    tie_low = torch.tensor([[[2.0, 0.0], [0.0, 5.0]]])
    assert removal_masks(tie_low, 25, order="least", ties="first").tolist() == [[[False, True], [False, False]]]
    assert removal_masks(tie_low, 25, order="least", ties="last").tolist() == [[[False, False], [True, False]]]
    assert removal_order(tie_low, "least", ties="first").tolist() == [[1, 2, 0, 3]]
    signed = torch.tensor([[[-3.0, 1.0], [2.0, 0.0]]])  # no ties: every rule gives one order
    for ties in ("first", "last", "random"):
        assert removal_order(signed, "most", ties=ties).tolist() == [[0, 2, 1, 3]]
        assert removal_order(signed, "least", ties=ties).tolist() == [[3, 1, 2, 0]]
        assert removal_order(signed, "most", ranking="signed", ties=ties).tolist() == [[2, 1, 3, 0]]
        assert removal_order(signed, "least", ranking="signed", ties=ties).tolist() == [[0, 3, 1, 2]]
    # a magnitude tie of opposite signs: the smaller index first in both orders
    opposite = torch.tensor([[[0.5, -2.0], [2.0, -0.5]]])
    assert removal_order(opposite, "most", ties="first").tolist() == [[1, 2, 0, 3]]
    assert removal_order(opposite, "least", ties="first").tolist() == [[0, 3, 1, 2]]


def test_random_ties_choose_uniformly_within_the_tied_block():
    # four equal pixels, one removed: over 400 tie seeds each is chosen about 100 times, whatever its position
    flat = torch.ones(1, 2, 2)
    counts = torch.zeros(4)
    for tie_seed in range(400):
        counts += removal_masks(flat, 25, order="least", tie_seed=tie_seed).flatten().double()
    assert counts.sum() == 400
    assert ((counts - 100).abs() < 35).all(), counts  # 3.5 sd of a binomial(400, 1/4)
    # the old rule always takes the first pixel
    assert removal_masks(flat, 25, order="least", ties="first").flatten().tolist() == [True, False, False, False]


def test_tie_share_counts_the_removed_pixels_chosen_among_equals():
    # 10 pixels: three 0s, then 1..7; removing 2 of the least: both chosen among the three zeros
    values = torch.tensor([[[0.0, 5.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 6.0, 7.0]]])
    assert removal.tie_share(values, 20, order="least").tolist() == [1.0]
    # removing 3: the whole tied block goes, no tie decided anything
    assert removal.tie_share(values, 30, order="least").tolist() == [0.0]
    # removing 4 of the most relevant: no tie
    assert removal.tie_share(values, 40, order="most").tolist() == [0.0]
    # 8-bit style: two pixels tied at 7 with one removed by MoRF -> 1 of 1
    tied_top = torch.tensor([[[7.0, 7.0, 1.0, 2.0]]])
    assert removal.tie_share(tied_top, 25, order="most").tolist() == [1.0]
    # 5 of 10 removed, the 3 zeros plus 1 and 2: none tied at the cut
    assert removal.tie_share(values, 50, order="least").tolist() == [0.0]
    # a constant map: every removed pixel is a tie
    assert removal.tie_share(torch.zeros(2, 3, 3), 50, order="most").tolist() == [1.0, 1.0]
    assert removal.tie_share(values, 0, order="least").tolist() == [0.0]


def _position_model(flipped: bool = False) -> torch.nn.Module:
    """Two classes; logit 0 weighs each pixel of a 4x4 image by its row (0.3 x row; ``flipped``: by
    0.3 x (3 - row)), so which pixel of a tied column is removed first matters."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2, dtype=torch.float64))
    with torch.no_grad():
        rows = torch.arange(4, dtype=torch.float64).repeat_interleave(4)
        model[1].weight.copy_(torch.stack([0.3 * ((3 - rows) if flipped else rows), torch.zeros(16, dtype=torch.float64)]))
        model[1].bias.zero_()
    return model.eval()


def test_the_expected_curve_does_not_depend_on_where_the_tied_block_sits():
    # A 4x4 image of ones; the map is 0 on its first column (a tied block of 4) and distinct elsewhere:
    # LeRF removes the block first. Mirroring the image upside down (the map and the model's weights
    # alike) must not change the expected curve: the block's pixels are the same, only their positions
    # moved. The literal expectation enumerates every order of the block.
    import itertools

    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    upright = torch.arange(1.0, 17.0).view(1, 4, 4).double()
    upright[:, :, 0] = 0.0
    setups = {"upright": (_position_model(), upright), "mirrored": (_position_model(flipped=True), upright.flip(1))}
    percents = [6.25, 12.5, 18.75, 25, 50]
    fractions = [p / 100 for p in percents]

    def expected(model, maps):
        block = [i for i in range(16) if float(maps.flatten()[i]) == 0.0]
        others = [i for i in range(16) if i not in block]
        keys = [list(p) + others for p in itertools.permutations(block)]
        return removal_curve_literal(model, x, maps, fractions, "least", [0.0], target=[1], keys=keys)

    want = {name: expected(*setup) for name, setup in setups.items()}
    torch.testing.assert_close(want["upright"], want["mirrored"], rtol=1e-12, atol=1e-14)
    scale = float(want["upright"].max())
    for model, maps in setups.values():
        got = pixel_removal_curve(model, x, maps, percents, order="least", target=[1], tie_seeds=200)
        torch.testing.assert_close(got, want["upright"], rtol=0.0, atol=0.05 * scale)
    # the index rule takes the block's top pixel first: a different curve once the image is mirrored
    first = {
        name: pixel_removal_curve(model, x, maps, percents, order="least", target=[1], ties="first")
        for name, (model, maps) in setups.items()
    }
    assert (first["upright"] - first["mirrored"]).abs().max() > 0.2 * scale
    # and it is still reproducible: "first" equals the literal index rule
    model, maps = setups["upright"]
    torch.testing.assert_close(
        first["upright"], removal_curve_literal(model, x, maps, fractions, "least", [0.0], target=[1]), rtol=1e-12, atol=1e-14
    )


def test_tie_orders_are_averaged_and_reported():
    model, x, maps = _curve_inputs()
    quantized = removal.quantize_maps(maps, levels=3)  # many ties
    percents = [10, 30]
    fractions = [p / 100 for p in percents]
    each = pixel_removal_curve(model, x, quantized, percents, tie_seeds=4, per_tie_order=True)
    assert each.shape == (3, 4, 2)
    torch.testing.assert_close(pixel_removal_curve(model, x, quantized, percents, tie_seeds=4), each.mean(1))
    keys = [tie_keys_literal(x.shape[2] * x.shape[3], "random", s) for s in range(4)]
    for s in range(4):
        want = removal_curve_literal(model, x, quantized, fractions, "least", [0.0] * x.shape[1], keys=[keys[s]])
        torch.testing.assert_close(each[:, s], want, rtol=1e-9, atol=1e-12)
    assert (each.std(1) > 0).any()  # the tie orders differ somewhere
    assert pixel_removal_curve(model, x, quantized, percents, ties="last", per_tie_order=True).shape == (3, 1, 2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="tie_seeds must be an int >= 1"):
            pixel_removal_curve(model, x, quantized, percents, tie_seeds=bad)
    with pytest.raises(ValueError, match="ties must be one of"):
        pixel_removal_curve(model, x, quantized, percents, ties="index")
    with pytest.raises(ValueError, match="tie_seed must be an int >= 0"):
        removal_masks(quantized, 10, tie_seed=-1)


@pytest.mark.filterwarnings("ignore:percent=0:UserWarning")  # 0.5 % and 0.49 % are meant here
@pytest.mark.filterwarnings("ignore:percent=.*did you mean:FutureWarning")  # sub-1 % amounts on purpose
def test_removal_count_rounds_half_up():
    assert removal_count(10, 100) == 10
    assert removal_count(29, 100) == 29  # 0.29 * 100 = 28.999999999999996
    assert removal_count(0.5, 100) == 1  # a half rounds up
    assert removal_count(1.5, 100) == 2  # 1.5, although 0.015 * 100 < 1.5 in binary
    assert removal_count(3 * 0.5, 100) == 2
    assert removal_count(0.49, 100) == 0
    assert removal_count(50, 3) == 2
    assert removal_count(25, 2) == 1
    assert removal_count(30, 10) == 3
    assert (removal_count(0, 64), removal_count(100, 64)) == (0, 64)
    for pixels in (1, 49, 100, 224 * 224):
        for i in range(1001):
            p = i / 10
            assert removal_count(p, pixels) == removal_count_literal(p / 100, pixels), (p, pixels)


@pytest.mark.filterwarnings("ignore:percent=0:UserWarning")  # 0.5 % is meant here
def test_removal_masks_count_and_nesting():
    maps = _tied_maps(2, 10, 10)
    previous = torch.zeros(2, 10, 10, dtype=torch.bool)
    for percent in (0, 0.5, 1, 10, 15, 50, 100):
        masks = removal_masks(maps, percent, order="least")
        assert masks.dtype == torch.bool and masks.shape == (2, 10, 10)
        assert masks.flatten(1).sum(1).tolist() == [removal_count(percent, 100)] * 2
        assert bool((masks | ~previous).all())  # a larger percent removes a superset
        previous = masks


# ------------------------------------------------------------------------------ fills and validation


def test_fill_variants_and_input_untouched():
    x, maps = _x(2, 3, 5, 5), _tied_maps(2, 5, 5)
    before = x.clone()
    removed = removal_masks(maps, 40, order="most")
    kept = ~removed.unsqueeze(1).expand_as(x)
    for fill, values in [
        (None, [0.0, 0.0, 0.0]),
        (1.5, [1.5, 1.5, 1.5]),
        (2, [2.0, 2.0, 2.0]),
        ([0.1, -0.2, 0.3], [0.1, -0.2, 0.3]),
        (torch.tensor([1.0, 2.0, 3.0]), [1.0, 2.0, 3.0]),
        (np.array([4.0, 5.0, 6.0]), [4.0, 5.0, 6.0]),
        (torch.tensor(7.0), [7.0, 7.0, 7.0]),
    ]:
        got = remove_pixels(x, maps, 40, order="most", fill=fill)
        assert got.dtype == x.dtype and got.shape == x.shape
        assert torch.equal(got[kept], x[kept])
        for c, value in enumerate(values):
            assert bool((got[:, c][removed] == value).all()), (fill, c)
        assert torch.equal(got, fill_pixels(x, removed, fill))
    road = remove_pixels(x, maps, 40, order="most", fill="road", seed=3)
    assert torch.equal(road[kept], x[kept])
    assert torch.equal(x, before)


def test_float32_input_keeps_dtype():
    x, maps = _x(1, 3, 4, 4).float(), _tied_maps(1, 4, 4)
    assert remove_pixels(x, maps, 50, fill=[1.0, 2.0, 3.0]).dtype == torch.float32
    assert remove_pixels(x, maps, 50, fill="road", seed=0).dtype == torch.float32


def test_errors_name_the_argument():
    x, maps = _x(2, 3, 4, 4), _tied_maps(2, 4, 4)
    for bad in (-0.1, 100.5, float("nan"), True, "0.1", None):
        with pytest.raises(ValueError, match="percent must be a number in \\[0, 100\\]"):
            remove_pixels(x, maps, bad)
    with pytest.raises(ValueError, match=r"maps must have shape \(B, H, W\) = \(2, 4, 4\).*got \(2, 4, 5\)"):
        remove_pixels(x, _tied_maps(2, 4, 5), 10)
    with pytest.raises(ValueError, match="maps must have shape"):
        remove_pixels(x, _tied_maps(1, 4, 4), 10)
    with pytest.raises(ValueError, match=r"order must be one of \['most', 'least'\], got 'top'"):
        remove_pixels(x, maps, 10, order="top")
    with pytest.raises(ValueError, match="order must be one of"):
        removal_order(maps, "Most")
    with pytest.raises(ValueError, match=r"ranking must be one of \['magnitude', 'signed'\], got 'abs'"):
        remove_pixels(x, maps, 10, ranking="abs")
    with pytest.raises(ValueError, match="ranking must be one of"):
        removal_order(maps, "most", ranking="absolute")
    nan_maps = maps.clone()
    nan_maps[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="maps contains NaN"):
        remove_pixels(x, nan_maps, 10)
    with pytest.raises(ValueError, match="maps contains NaN"):
        removal_order(nan_maps, "least")
    for bad_fill in ("mean", [1.0, 2.0], [1.0, 2.0, float("inf")], True):
        with pytest.raises(ValueError, match="fill must be"):
            remove_pixels(x, maps, 10, fill=bad_fill)
    with pytest.raises(ValueError, match="removed must be a boolean tensor"):
        fill_pixels(x, removal_masks(maps, 10).float(), 0.0)


# ------------------------------------------------------------------------------ ROAD


def _random_mask(height: int, width: int, share: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(height, width, generator=g) < share


def test_road_constant_image_is_reproduced():
    x = torch.full((1, 3, 7, 6), 0.7, dtype=torch.float64)
    x[:, 1] = -2.0
    removed = _random_mask(7, 6, 0.6, 0).unsqueeze(0)
    removed[0, 0, 0] = removed[0, 6, 5] = True  # corners too
    got = noisy_linear_imputation(x, removed, noise=0.0)
    torch.testing.assert_close(got, x, rtol=0, atol=1e-12)


def test_road_linear_ramp_interior_and_borders():
    h, w = 8, 9
    rows = torch.arange(h, dtype=torch.float64).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float64).view(1, w).expand(h, w)
    ramp = torch.stack([2 * rows - 3 * cols + 1, rows, cols]).unsqueeze(0)  # (1, 3, H, W)
    interior = torch.zeros(1, h, w, dtype=torch.bool)
    interior[0, 1:-1, 1:-1] = _random_mask(h - 2, w - 2, 0.7, 1)  # clusters of removed pixels, none on the border
    got = noisy_linear_imputation(ramp, interior, noise=0.0)
    torch.testing.assert_close(got, ramp, rtol=0, atol=1e-12)
    # top border (not corners): a ramp along the border is reproduced, one across it is not
    top = torch.zeros(1, h, w, dtype=torch.bool)
    top[0, 0, 3] = True
    got = noisy_linear_imputation(ramp, top, noise=0.0)
    assert float(got[0, 2, 0, 3]) == pytest.approx(3.0, abs=1e-12)  # cols: exact
    # rows: neighbours (0, 2), (0, 4) at row 0 with weight 1/6, (1, 3) 1/6 and (1, 2), (1, 4) 1/12 at row 1
    assert float(got[0, 1, 0, 3]) == pytest.approx((1 / 6 + 2 / 12) / (3 / 6 + 2 / 12), abs=1e-12)  # 0.5, not 0
    # corner (0, 0): neighbours (0, 1) 1/6, (1, 0) 1/6, (1, 1) 1/12: neither ramp is reproduced
    corner = torch.zeros(1, h, w, dtype=torch.bool)
    corner[0, 0, 0] = True
    got = noisy_linear_imputation(ramp, corner, noise=0.0)
    assert float(got[0, 2, 0, 0]) == pytest.approx((1 / 6 + 1 / 12) / (5 / 12), abs=1e-12)  # 0.6
    assert float(got[0, 1, 0, 0]) == pytest.approx(0.6, abs=1e-12)


def _neighbour_mean(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    total, weights = torch.zeros(img.shape[0], dtype=torch.float64), 0.0
    for dh in (-1, 0, 1):
        for dw in (-1, 0, 1):
            hh, ww = h + dh, w + dw
            if (dh, dw) != (0, 0) and 0 <= hh < img.shape[1] and 0 <= ww < img.shape[2]:
                weight = 1 / 6 if dh == 0 or dw == 0 else 1 / 12
                total += weight * img[:, hh, ww]
                weights += weight
    return total / weights


def test_road_solves_the_neighbour_equations_and_matches_literal():
    x = _x(2, 3, 9, 8, seed=4)
    removed = torch.stack([_random_mask(9, 8, 0.5, 5), _random_mask(9, 8, 0.9, 6)])
    got = noisy_linear_imputation(x, removed, noise=0.0)
    for b in range(2):
        torch.testing.assert_close(got[b], road_imputation_literal(x[b], removed[b]), rtol=0, atol=1e-10)
        for h, w in removed[b].nonzero().tolist():
            residual = (got[b, :, h, w] - _neighbour_mean(got[b], h, w)).abs().max()
            assert float(residual) < 1e-10
    kept = ~removed.unsqueeze(1).expand_as(x)
    assert torch.equal(got[kept], x[kept])


def test_road_noise_only_on_removed_pixels_from_the_seeded_field():
    x = _x(2, 3, 6, 6, seed=7)
    removed = torch.stack([_random_mask(6, 6, 0.3, 8), _random_mask(6, 6, 0.6, 9)])
    clean = noisy_linear_imputation(x, removed, noise=0.0)
    noisy = noisy_linear_imputation(x, removed, noise=0.5, seed=[11, 12])
    kept = ~removed.unsqueeze(1).expand_as(x)
    assert torch.equal(noisy[kept], x[kept])
    for b, s in enumerate([11, 12]):
        field = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
        torch.testing.assert_close(
            noisy[b][:, removed[b]] - clean[b][:, removed[b]], 0.5 * field[:, removed[b]], rtol=0, atol=1e-12
        )
    per_channel = noisy_linear_imputation(x, removed, noise=[0.0, 1.0, 2.0], seed=[11, 12])
    assert torch.equal(per_channel[:, 0], clean[:, 0])
    torch.testing.assert_close(per_channel[:, 2] - clean[:, 2], 2 * (noisy[:, 2] - clean[:, 2]) / 0.5 / 1, rtol=0, atol=1e-12)


def test_road_seeds_reproducible_and_batch_independent():
    x = _x(3, 3, 6, 5, seed=10)
    removed = torch.stack([_random_mask(6, 5, 0.4, s) for s in (20, 21, 22)])
    a = noisy_linear_imputation(x, removed, seed=[1, 2, 3])
    assert torch.equal(a, noisy_linear_imputation(x, removed, seed=[1, 2, 3]))
    assert not torch.equal(a, noisy_linear_imputation(x, removed, seed=[1, 2, 4]))
    for b, s in enumerate([1, 2, 3]):
        assert torch.equal(a[b : b + 1], noisy_linear_imputation(x[b : b + 1], removed[b : b + 1], seed=[s]))
    # an int seed: every image's field from that seed, batched or alone
    one = noisy_linear_imputation(x, removed, seed=5)
    assert torch.equal(one, noisy_linear_imputation(x, removed, seed=[5, 5, 5]))
    assert torch.equal(one[2:], noisy_linear_imputation(x[2:], removed[2:], seed=5))
    # a generator: one field per image in batch order
    batched = noisy_linear_imputation(x, removed, seed=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    alone = torch.cat([noisy_linear_imputation(x[b : b + 1], removed[b : b + 1], seed=g) for b in range(3)])
    assert torch.equal(batched, alone)
    # the global RNG, untouched by a noise-free call
    state = torch.get_rng_state()
    noisy_linear_imputation(x, removed, noise=0.0)
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(ValueError, match="seed must be"):
        noisy_linear_imputation(x, removed, seed=[1, 2])
    with pytest.raises(ValueError, match="noise must be"):
        noisy_linear_imputation(x, removed, noise=-0.1)


# ROAD's noise stream, pinned: image b's field is torch.randn((C, H, W), float64) from a CPU torch.Generator
# seeded with its seed (or the caller's generator / the global RNG, one field per image in batch order,
# also for an image with nothing removed). These are the first row of channel 0 and the last row of
# channel 2 of the (3, 4, 4) field of seed 0 (torch 2.x's Mersenne Twister and float64 normal sampler):
# a change of seeding, dtype, shape or draw order changes them, and with them every cached ROAD number.
SEED0_FIELD_FIRST_ROW = [-2.310411800234176, -0.3732508612577643, -1.0608166785462863, 0.9995093547811761]
SEED0_FIELD_LAST_ROW = [-0.30991497424174674, 0.24018023403782535, -1.3487610270963772, 0.2443990933828689]


def _field(generator: torch.Generator | None, shape: tuple[int, ...] = (3, 4, 4)) -> torch.Tensor:
    """The literal draw: one standard-normal float64 field."""
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def test_road_noise_field_of_a_seed_is_pinned():
    """Every pixel removed: the imputed value is 0.0, so the result is noise x the field itself."""
    x = torch.full((1, 3, 4, 4), 5.0, dtype=torch.float64)
    everything = torch.ones(1, 4, 4, dtype=torch.bool)
    got = noisy_linear_imputation(x, everything, noise=1.0, seed=0)[0]
    assert got[0, 0].tolist() == SEED0_FIELD_FIRST_ROW
    assert got[2, 3].tolist() == SEED0_FIELD_LAST_ROW
    assert torch.equal(got, _field(torch.Generator().manual_seed(0)))
    assert torch.equal(noisy_linear_imputation(x, everything, noise=1.0, seed=[0])[0], got)
    # float32 images: the same float64 field, rounded once at the end
    assert torch.equal(noisy_linear_imputation(x.float(), everything, noise=1.0, seed=0)[0], got.float())
    # the ROAD fill of fill_pixels and remove_pixels (100 % removed) draws the same field
    assert torch.equal(fill_pixels(x, everything, "road", seed=0, noise=1.0)[0], got)
    assert torch.equal(remove_pixels(x, torch.rand(1, 4, 4, dtype=torch.float64), 100, fill="road", seed=0, noise=1.0)[0], got)
    torch.testing.assert_close(noisy_linear_imputation(x, everything, noise=0.25, seed=0)[0], 0.25 * got, rtol=0, atol=1e-15)


def test_road_noise_stream_draws_one_field_per_image_in_batch_order():
    """A generator or the global RNG gives image b the b-th field drawn, also when an image before it
    has no removed pixel (its field is drawn and unused); an int gives every image the same field;
    ints one field each."""
    x = _x(3, 3, 4, 4, seed=3)
    removed = torch.zeros(3, 4, 4, dtype=torch.bool)
    removed[0] = removed[2] = True  # image 1 keeps every pixel
    noise = 0.5

    def check(got: torch.Tensor, fields: list[torch.Tensor]) -> None:
        assert torch.equal(got[1], x[1])
        for b in (0, 2):
            torch.testing.assert_close(got[b], noise * fields[b], rtol=0, atol=1e-15)

    g = torch.Generator().manual_seed(5)
    literal = [_field(g) for _ in range(3)]
    check(noisy_linear_imputation(x, removed, noise=noise, seed=torch.Generator().manual_seed(5)), literal)
    g = torch.Generator().manual_seed(5)
    assert torch.equal(
        fill_pixels(x, removed, "road", seed=g, noise=noise),
        noisy_linear_imputation(x, removed, noise=noise, seed=torch.Generator().manual_seed(5)),
    )
    assert torch.equal(_field(g), _field(_after(5, 3)))  # the caller's generator moved on by exactly 3 fields
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(6)
        got = noisy_linear_imputation(x, removed, noise=noise)
        torch.manual_seed(6)
        check(got, [_field(None) for _ in range(3)])
    same = _field(torch.Generator().manual_seed(8))
    check(noisy_linear_imputation(x, removed, noise=noise, seed=8), [same] * 3)
    check(noisy_linear_imputation(x, removed, noise=noise, seed=[8, 9, 10]), [_field(torch.Generator().manual_seed(s)) for s in (8, 9, 10)])


def _after(seed: int, fields: int) -> torch.Generator:
    """A generator seeded with ``seed`` that has drawn ``fields`` (3, 4, 4) fields."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(fields):
        _field(g)
    return g


def test_road_curve_draws_its_noise_image_major_from_the_generator():
    """pixel_removal_curve with fill="road" and a generator: one field per evaluated removal, image by
    image and percent by percent, whatever batch_size; against a literal loop over the same generator."""
    model, x = tiny_cnn(), images(2)
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    percents, noise = [10.0, 50.0], 0.5
    with torch.no_grad():
        logits = model(x)
        target = logits.argmax(1)
        p0 = logits.softmax(1)[torch.arange(2), target]
        g = torch.Generator().manual_seed(7)
        want = torch.zeros(2, 2, dtype=torch.float64)
        for b in range(2):
            for f, percent in enumerate(percents):
                removed = removal_masks(maps[b : b + 1], percent, order="least", ties="first")
                changed = noisy_linear_imputation(x[b : b + 1], removed, noise=noise, seed=g)
                p = model(changed).softmax(1)[0, target[b]]
                want[b, f] = (p - p0[b]).abs() / p0[b]
    for size in (None, 1, 3):
        got = pixel_removal_curve(
            model, x, maps, percents, fill="road", ties="first", seed=torch.Generator().manual_seed(7), noise=noise, batch_size=size
        )
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    other = pixel_removal_curve(model, x, maps, percents, fill="road", ties="first", seed=torch.Generator().manual_seed(8), noise=noise)
    assert not torch.allclose(other, want, rtol=1e-6, atol=0)


def test_road_everything_removed_and_nothing_removed():
    x = _x(1, 2, 4, 4)
    everything = torch.ones(1, 4, 4, dtype=torch.bool)
    assert torch.equal(noisy_linear_imputation(x, everything, noise=0.0), torch.zeros_like(x))
    noisy = noisy_linear_imputation(x, everything, noise=0.1, seed=0)
    field = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(noisy[0], 0.1 * field, rtol=0, atol=1e-15)
    assert torch.equal(noisy_linear_imputation(x, torch.zeros(1, 4, 4, dtype=torch.bool), seed=0), x)


def test_remove_pixels_road_uses_masks_and_seed():
    x, maps = _x(2, 3, 6, 6), _tied_maps(2, 6, 6)
    got = remove_pixels(x, maps, 30, order="least", fill="road", seed=[4, 5])
    want = noisy_linear_imputation(x, removal_masks(maps, 30, order="least"), seed=[4, 5])
    assert torch.equal(got, want)


# ------------------------------------------------------------------------------ removal curves


def _curve_inputs():
    model = tiny_cnn(seed=3)
    x = images(3, seed=4)
    g = torch.Generator().manual_seed(5)
    maps = torch.randint(-3, 4, (3, 8, 8), generator=g).double()  # ties
    return model, x, maps


@pytest.mark.parametrize("order", ["least", "most"])
def test_curve_matches_literal(order):
    model, x, maps = _curve_inputs()
    percents = [0, 5, 10, 50, 100]
    fractions = [p / 100 for p in percents]
    keys = [tie_keys_literal(64, "random", s) for s in range(removal.TIE_SEEDS)]  # the default: 5 random tie orders
    got = pixel_removal_curve(model, x, maps, percents, order=order)
    assert got.shape == (3, 5) and got.device.type == "cpu"
    want = removal_curve_literal(model, x, maps, fractions, order, [0.0] * 3, keys=keys)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    assert torch.equal(got[:, 0], torch.zeros(3))
    fill, target = [0.5, -0.5, 1.0], [1, 4, 0]
    got = pixel_removal_curve(model, x, maps, percents, order=order, fill=fill, target=target, ties="first")
    torch.testing.assert_close(got, removal_curve_literal(model, x, maps, fractions, order, fill, target), rtol=1e-9, atol=1e-12)


def test_curve_batch_size_invariant():
    model, x, maps = _curve_inputs()
    percents = [1, 10, 30]
    full = pixel_removal_curve(model, x, maps, percents)
    for batch_size in (1, 2, 4, 100):
        torch.testing.assert_close(
            pixel_removal_curve(model, x, maps, percents, batch_size=batch_size), full, rtol=1e-12, atol=1e-14
        )
    road = pixel_removal_curve(model, x, maps, percents, fill="road", seed=[7, 8, 9])
    for batch_size in (1, 5):
        got = pixel_removal_curve(model, x, maps, percents, fill="road", seed=[7, 8, 9], batch_size=batch_size)
        torch.testing.assert_close(got, road, rtol=1e-12, atol=1e-14)
    # image 1 alone, with its own seed, gives its row
    alone = pixel_removal_curve(model, x[1:2], maps[1:2], percents, fill="road", seed=[8])
    torch.testing.assert_close(alone[0], road[1], rtol=1e-12, atol=1e-14)


def test_curve_leaves_model_and_input_alone():
    model, x, maps = _curve_inputs()
    want = pixel_removal_curve(model, x, maps, [10, 20])
    model.train()
    model.conv1.eval()
    x = x.clone().requires_grad_(True)
    got = pixel_removal_curve(model, x, maps, [10, 20], batch_size=2)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert model.training and not model.conv1.training and model.conv2.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert x.grad is None and not got.requires_grad


def test_curve_validates():
    model, x, maps = _curve_inputs()
    with pytest.raises(ValueError, match="percents must be"):
        pixel_removal_curve(model, x, maps, [])
    with pytest.raises(ValueError, match="percents must be numbers in \\[0, 100\\]"):
        pixel_removal_curve(model, x, maps, [10, 150])
    with pytest.raises(ValueError, match="percents must be"):
        pixel_removal_curve(model, x, maps, 10)
    with pytest.raises(ValueError, match="batch_size must be"):
        pixel_removal_curve(model, x, maps, [10], batch_size=0)
    with pytest.raises(ValueError, match="maps must have shape"):
        pixel_removal_curve(model, x, maps[:2], [10])
    with pytest.raises(ValueError, match="order must be one of"):
        pixel_removal_curve(model, x, maps, [10], order="lerf")
    with pytest.raises(ValueError, match="target must be"):
        pixel_removal_curve(model, x, maps, [10], target=[0, 1])


# ------------------------------------------------------------------------------ area under the curve


def test_area_under_curve_by_hand():
    # points (0, 0), (1, 2), (2, 4), (4, 4): 1 * 2 / 2 + 1 * 6 / 2 + 2 * 8 / 2 = 12
    assert float(area_under_curve([1, 2, 4], torch.tensor([2.0, 4.0, 4.0]))) == pytest.approx(12.0)
    values = torch.tensor([[[2.0, 4.0, 4.0]], [[1.0, 1.0, 0.0]]])  # (2, 1, 3)
    got = area_under_curve(torch.tensor([1.0, 2.0, 4.0]), values)
    assert got.shape == (2, 1)
    assert got.flatten().tolist() == pytest.approx([12.0, 0.5 + 1.0 + 1.0])
    # percent 1..10 of a constant curve c: c / 2 for the first step, 9 c after
    assert float(area_under_curve(range(1, 11), np.full(10, 0.2))) == pytest.approx(0.2 / 2 + 9 * 0.2)
    # a curve that already starts at 0 adds a zero-width step
    assert float(area_under_curve([0, 2], [0.0, 1.0])) == pytest.approx(1.0)


def test_area_under_curve_validates():
    with pytest.raises(ValueError, match="percents must be"):
        area_under_curve([1, 2], torch.ones(3))
    with pytest.raises(ValueError, match="strictly increasing"):
        area_under_curve([1, 1, 2], torch.ones(3))
    with pytest.raises(ValueError, match="strictly increasing"):
        area_under_curve([-1, 1, 2], torch.ones(3))


# ---- the authors' 8-bit maps and recorded removal decisions ----


def test_quantize_maps_rounds_the_normalized_magnitude_to_256_levels():
    maps = torch.tensor([[[0.0, -1.0], [0.5, 0.25]], [[0.0, 0.0], [0.0, 0.0]]])
    q = removal.quantize_maps(maps)
    # |map| / peak * 255, rounded half up, back to [0, 1]: 0.5 -> 127.5 -> 128, 0.25 -> 63.75 -> 64
    expected = torch.tensor([[[0.0, 255.0], [128.0, 64.0]], [[0.0, 0.0], [0.0, 0.0]]]) / 255
    torch.testing.assert_close(q, expected)
    with pytest.raises(ValueError, match="levels must be an int >= 2"):
        removal.quantize_maps(maps, levels=1)


def test_removal_decisions_are_recorded_replayed_and_restored():
    from pathlib_pw import decisions

    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(2, 20, 20, generator=generator)
    with decisions.recording() as log:
        recorded = removal.removal_masks(maps, 30, order="least")
    assert len(log) == 2
    # swap the scores of the last removed and the first kept pixel of image 0: a rounding-size change
    order = removal.removal_order(maps, "least")
    last, first = order[0, 119], order[0, 120]
    nudged = maps.clone().view(2, -1)
    nudged[0, last], nudged[0, first] = maps.view(2, -1)[0, first], maps.view(2, -1)[0, last]
    nudged = nudged.view(2, 20, 20)
    assert not torch.equal(removal.removal_masks(nudged, 30, order="least"), recorded)
    with decisions.replaying(log) as report:
        replayed = removal.removal_masks(nudged, 30, order="least")
    assert report.ok and report.changed == 2
    torch.testing.assert_close(replayed, recorded)
    # 10 % more pixels removed: more changes than rounding can explain
    with decisions.replaying(log) as report:
        removal.removal_masks(maps, 40, order="least")
    assert not report.ok
