"""pathlib_pw.selection: the order statistics, counts and per-image threads behind the threshold, against
sorts, plain sums and a barrier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathlib_pw import selection
from pathlib_pw.selection import any_true, count_true, kth_smallest, map_images, per_image


def test_kth_smallest_is_the_order_statistic_on_both_sides_and_with_ties():

    g = torch.Generator().manual_seed(5)
    for flat in (torch.rand(3, 1001, generator=g), torch.randint(0, 4, (3, 1001), generator=g).float()):
        ordered = flat.sort(1).values
        # one site, and the same scores split into three sites of different shapes
        for per_site in ([flat], [flat[:, :1].view(3, 1, 1), flat[:, 1:401].view(3, 4, 10, 10), flat[:, 401:]]):
            for k in (0, 3, 499, 500, 501, 997, 1000):
                got = kth_smallest(per_site, torch.full((3,), k))
                assert torch.equal(got, ordered[:, k]), k
            per_row = torch.tensor([0, 600, 1000])
            assert torch.equal(kth_smallest(per_site, per_row), ordered[torch.arange(3), per_row])
            assert torch.equal(kth_smallest([t.double() for t in per_site], per_row), ordered[torch.arange(3), per_row].double())


def test_kth_smallest_counts_nan_as_largest_and_falls_back_for_other_dtypes():

    flat = torch.tensor([[3.0, float("nan"), 1.0, 2.0]])
    assert kth_smallest([flat], torch.tensor([2])).item() == 3.0
    assert torch.isnan(kth_smallest([flat], torch.tensor([3]))).all()
    # bfloat16 has no numpy type: torch's kthvalue path, same order statistic
    flat = torch.tensor([[4.0, 1.0, 3.0, 2.0], [0.5, 0.25, 1.0, 2.0]], dtype=torch.bfloat16)
    assert kth_smallest([flat], torch.tensor([1, 2])).tolist() == [2.0, 1.0]
    assert kth_smallest([flat], torch.tensor([0, 0])).tolist() == [1.0, 0.25]


@pytest.mark.parametrize("samples", [4, 16, 256])
def test_bracketed_kth_is_the_sorted_value_on_every_branch(samples, monkeypatch):

    # the CPU selection behind kth_smallest, against numpy's sort, with rows whose rank k falls
    # inside tied blocks at the low bound (zeros), at the high bound (gates at 1), a single value, NaN
    fallbacks = []
    real = selection._sorted_kth
    monkeypatch.setattr(selection, "_sorted_kth", lambda parts, k: fallbacks.append(k) or real(parts, k))
    g = np.random.default_rng(3)
    n = 3000
    rows = {
        "distinct": g.random(n, dtype=np.float32),
        "zeros": np.where(g.random(n) < 0.5, 0.0, g.random(n)).astype(np.float32),
        "ones": np.where(g.random(n) < 0.4, 1.0, g.random(n)).astype(np.float32),
        "four values": g.integers(0, 4, n).astype(np.float64),
        "one value": np.full(n, 2.5, dtype=np.float16),
        "nan": np.where(g.random(n) < 0.01, np.nan, g.random(n)).astype(np.float32),
        "one value, one nan": np.where(np.arange(n) == 1234, np.nan, 2.5).astype(np.float32),
    }
    ranks = [*range(0, n, 7), n - 1]
    for name, row in rows.items():
        want = np.sort(row)
        parts = np.split(row, [1, 700, 700, 2100])  # sites of different sizes, one of them empty
        before = len(fallbacks)
        for k in ranks:
            got = selection._bracketed_kth(parts, k, samples=samples)
            assert got == want[k] or (np.isnan(got) and np.isnan(want[k])), (name, k)
            assert got.dtype == row.dtype
            # the masks written on the way: "above the value" exactly, whichever branch answered
            above = [np.ones(p.size, dtype=bool) for p in parts]  # every entry must be written
            value, count = selection._bracketed_above(parts, k, above, samples=samples)
            assert value == got or np.isnan(got)
            for p, mask in zip(parts, above):
                assert np.array_equal(mask, p > want[k]), (name, k)
            assert count == np.count_nonzero(row > want[k]), (name, k)  # and counted them
        # two calls per rank (without and with the masks)
        if "nan" in name:
            assert len(fallbacks) - before == 2 * len(ranks)  # NaN anywhere: the full sort
        elif samples == 256:
            assert len(fallbacks) - before < 2 * len(ranks) / 20, name  # the bracket itself answered


def test_sorted_kth_is_right_for_float16_among_many_infinities():

    # numpy's vectorized float16 sort (AVX-512) puts -2 before 543 times -inf; the fallback sorts as float32
    row = np.array([-2.0] + [-np.inf] * 543, dtype=np.float16)
    for k, want in ((0, -np.inf), (542, -np.inf), (543, -2.0)):
        got = selection._sorted_kth([row[:100], row[100:]], k)
        assert got == want and got.dtype == np.float16, k
    # the bracket's kept values too: with a stride above 543 the sample holds one -inf at most, so lo
    # can be -inf without a tie and every -inf is kept and sorted
    g = np.random.default_rng(4)
    row = np.concatenate([[-2.0], [-np.inf] * 543, g.random(1656)]).astype(np.float16)
    want = np.sort(row.astype(np.float64))
    for k in (0, 300, 542, 543, 544, 1000, 2199):
        got = selection._bracketed_kth([row[:700], row[700:]], k, samples=4)
        assert got == want[k] and got.dtype == np.float16, k


@pytest.mark.parametrize("samples", [4, 256])
def test_bracketed_kth_finds_a_nan_the_sample_missed(samples):

    # the sample holds a few hundredths of the values: a single NaN is almost never in it, and the
    # passes' counts must still see it (NaN is largest: every rank moves)
    g = np.random.default_rng(11)
    n = 3000
    for position in g.choice(n, 12, replace=False):
        for base in (g.random(n, dtype=np.float32), np.where(g.random(n) < 0.5, 0.0, g.random(n)).astype(np.float32)):
            row = base.copy()
            row[position] = np.nan
            want = np.sort(row)
            parts = np.split(row, [5, 1900])
            for k in (0, 1500, 2700, n - 2, n - 1):
                got = selection._bracketed_kth(parts, k, samples=samples)
                assert got == want[k] or (np.isnan(got) and np.isnan(want[k])), (position, k)
                above = [np.ones(p.size, dtype=bool) for p in parts]
                _, count = selection._bracketed_above(parts, k, above, samples=samples)
                assert all(np.array_equal(mask, p > want[k]) for p, mask in zip(parts, above)), (position, k)
                assert count == np.count_nonzero(row > want[k]), (position, k)


def test_above_kth_writes_the_masks_in_the_brackets_pass_and_equals_the_comparison(monkeypatch):

    # 1.2 million scores per image: the bracket answers, and its pass writes the masks (no comparison
    # after it); against kth_smallest and torch's ">" on sites of different shapes, one of them a
    # transposed (non-contiguous) view, with exact zeros (a tied block) and every value about 17 times
    fused = []
    real = selection._bracketed
    monkeypatch.setattr(selection, "_bracketed", lambda *a: (lambda r: fused.append(r[1] is not None) or r)(real(*a)))
    g = torch.Generator().manual_seed(7)
    flat = torch.rand(3, 1_200_000, generator=g)
    flat = torch.where(torch.rand(3, 1_200_000, generator=g) < 0.3, 0.0, torch.round(flat * 50_000) / 50_000)
    sites = [flat[:, :200_000].view(3, 8, 25, 1000).transpose(2, 3), flat[:, 200_000:1_199_990], flat[:, 1_199_990:]]
    for k in (torch.tensor([0, 1, 2]), torch.tensor([400_000, 900_000, 1_199_999]), torch.tensor([1_080_000] * 3)):
        cut, masks, kept = selection.above_kth(sites, k)
        assert torch.equal(cut, kth_smallest(sites, k))
        for s, m in zip(sites, masks):
            assert m.dtype == torch.bool and m.shape == s.shape
            assert torch.equal(m, s > per_image(cut, s))
        assert kept.dtype == torch.int64 and torch.equal(kept, (flat > per_image(cut, flat)).sum(1))
    assert any(fused) and not all(fused)  # both the bracket's masks and numpy's comparison were used


@pytest.mark.parametrize("samples", [8, 64, 4096])
def test_sampled_kth_is_the_order_statistic_on_every_branch(samples, monkeypatch):

    fallbacks = []
    kthvalue_rows = selection.kthvalue_rows
    monkeypatch.setattr(selection, "kthvalue_rows", lambda flat, k: fallbacks.append(len(k)) or kthvalue_rows(flat, k))
    g = torch.Generator().manual_seed(samples)
    n = 4 * samples + 5000
    datasets = {
        "continuous": torch.rand(5, n, generator=g) * torch.rand(5, n, generator=g),
        "half zeros": torch.where(torch.rand(5, n, generator=g) < 0.5, 0.0, torch.rand(5, n, generator=g)),
        "three values": torch.randint(0, 3, (5, n), generator=g).float(),
        "with nan": torch.rand(5, n, generator=g).index_put_((torch.tensor([1]), torch.tensor([7])), torch.tensor(float("nan"))),
    }
    for name, flat in datasets.items():
        k = torch.tensor([0, 3, n // 2, int(0.9 * (n - 1)), n - 1])
        got = selection.sampled_kth(flat, k, samples=samples)
        want = flat.sort(1).values[torch.arange(5), k]
        assert torch.equal(got, want) or torch.allclose(got, want, equal_nan=True), (name, got, want)
    if samples == 8:  # a sample of 8 rarely holds the extreme order statistics: the fallback ran
        assert fallbacks


@pytest.mark.parametrize("samples", [4, 64, 256])
def test_sampled_kth_is_the_sorted_value_at_every_rank(samples, monkeypatch):
    """Every rank k = 0 .. n - 1 of rows of several sizes (just above the bracket's threshold of
    4 x samples), with ties and NaN, against a literal sort: each k lands once just below, on and
    just above the sampled bracket's ends, where an off-by-one in the bracket's counts shows. Most
    rows must be answered by the bracket itself, not by the kthvalue fallback."""
    fallbacks = []
    kthvalue_rows = selection.kthvalue_rows
    monkeypatch.setattr(selection, "kthvalue_rows", lambda flat, k: fallbacks.append(len(k)) or kthvalue_rows(flat, k))
    g = torch.Generator().manual_seed(100 + samples)
    rows = 0
    for n in (4 * samples + 1, 4 * samples + 7, 6 * samples + 3):
        for name, row in {
            "continuous": torch.rand(n, generator=g),
            "ties": torch.randint(0, 5, (n,), generator=g).double(),
            "many ties": torch.where(torch.rand(n, generator=g) < 0.7, 0.0, torch.rand(n, generator=g)),
            "nan": torch.rand(n, generator=g).index_fill(0, torch.tensor([1, n // 2]), float("nan")),
            "constant": torch.full((n,), 0.5),
        }.items():
            flat = row.expand(n, n).contiguous()  # row b asks for rank b
            k = torch.arange(n)
            ordered = torch.tensor(sorted(row.tolist(), key=lambda v: (v != v, v)), dtype=row.dtype)  # NaN last
            got = selection.sampled_kth(flat, k, samples=samples)
            assert torch.allclose(got, ordered, equal_nan=True, rtol=0, atol=0), (name, n, (got != ordered).nonzero())
            rows += n
    assert sum(fallbacks) < rows / 2, (sum(fallbacks), rows)


def test_sampled_kth_is_the_sorted_value_for_random_sizes_and_ranks():
    g = torch.Generator().manual_seed(9)
    for _ in range(40):
        n = int(torch.randint(65, 700, (1,), generator=g))
        flat = torch.randint(0, int(torch.randint(2, 50, (1,), generator=g)), (6, n), generator=g).double()
        flat += torch.rand(6, n, generator=g).double() * (torch.rand(6, 1, generator=g) < 0.5)  # some rows tie, some not
        k = torch.cat([torch.tensor([0, n - 1]), torch.randint(0, n, (4,), generator=g)])
        want = flat.sort(1).values[torch.arange(6), k]
        assert torch.equal(selection.sampled_kth(flat, k, samples=16), want), (n, k)


def test_sampled_kth_and_kth_smallest_reject_a_rank_outside_the_row():
    flat = torch.rand(2, 300)
    for bad in (300, -1):
        with pytest.raises(ValueError, match=rf"k must be a 0-based rank from 0 to n - 1 = 299 \(n = 300 scores per image\), got k = {bad}"):
            selection.sampled_kth(flat, torch.tensor([0, bad]), samples=8)
        with pytest.raises(ValueError, match=rf"got k = {bad}"):
            kth_smallest([flat[:, :100], flat[:, 100:]], torch.tensor([bad, 5]))
        with pytest.raises(ValueError, match=rf"got k = {bad}"):
            kth_smallest([flat.to(torch.bfloat16)], torch.tensor([bad, 5]))  # the torch path
    with pytest.raises(ValueError, match=r"one rank per image \(2\), got shape \(3,\)"):
        selection.sampled_kth(flat, torch.tensor([0, 1, 2]))
    assert torch.equal(selection.sampled_kth(flat, torch.tensor([299, 0]), samples=8), torch.stack([flat[0].max(), flat[1].min()]))


def test_per_image_broadcasts_one_value_per_image():

    like = torch.zeros(3, 2, 4, 5)
    shaped = per_image(torch.tensor([1.0, 2.0, 3.0]), like)
    assert shaped.shape == (3, 1, 1, 1)
    assert torch.equal((like + shaped)[:, 1, 3, 4], torch.tensor([1.0, 2.0, 3.0]))
    assert per_image(torch.tensor([1.0, 2.0]), torch.zeros(2, 7)).shape == (2, 1)


def test_count_true_matches_a_plain_sum_per_image():

    g = torch.Generator().manual_seed(2)
    mask = torch.rand(3, 4, 5, 6, generator=g) > 0.3
    assert torch.equal(count_true(mask), mask.flatten(1).long().sum(1))
    assert torch.equal(count_true(mask[:, 1:3]), mask[:, 1:3].flatten(1).long().sum(1))  # a non-contiguous view
    assert count_true(mask).dtype == torch.int64


@pytest.mark.parametrize("by_numpy", [True, False])
def test_count_true_on_each_branch_matches_a_plain_sum(by_numpy):
    """Both branches on the CPU: numpy's (the CPU's) and torch's sum (the one a GPU takes)."""
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(4, 3, 5, 7, generator=g) > 0.6
    for m in (mask, mask[:, 1:], mask.transpose(1, 3), torch.zeros(2, 0, dtype=torch.bool)):
        want = torch.tensor([int(row.sum()) for row in m.reshape(m.shape[0], -1)], dtype=torch.int64)
        got = selection._count_true(m, by_numpy=by_numpy)
        assert got.dtype == torch.int64 and got.shape == (m.shape[0],)
        assert torch.equal(got, want)


def test_count_true_takes_torchs_branch_off_the_cpu(monkeypatch):
    branches = []
    real = selection._count_true
    monkeypatch.setattr(selection, "_count_true", lambda mask, by_numpy: branches.append(by_numpy) or real(mask, by_numpy))
    meta = count_true(torch.zeros(3, 4, 5, dtype=torch.bool, device="meta"))  # numpy cannot read it
    assert meta.shape == (3,) and meta.dtype == torch.int64 and meta.device.type == "meta"
    count_true(torch.zeros(3, 4, dtype=torch.bool))
    assert branches == [False, True]


def test_any_true_matches_torchs_any_per_image():

    # numpy's any stops at a row's first True: rows empty, True only at the very end or start, a view
    mask = torch.zeros(4, 3, 50, 70, dtype=torch.bool)
    mask[1, -1, -1, -1] = True
    mask[2, 0, 0, 0] = True
    mask[3] = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(1)) > 0.5
    for m in (mask, mask[:, 1:], mask.transpose(1, 3), torch.zeros(2, 0, dtype=torch.bool)):
        got = any_true(m)
        assert got.dtype == torch.bool and torch.equal(got, m.reshape(m.shape[0], -1).any(1))
    assert any_true(mask).tolist() == [False, True, True, True]
    meta = any_true(torch.zeros(3, 4, dtype=torch.bool, device="meta"))  # torch's branch off the CPU
    assert meta.shape == (3,) and meta.device.type == "meta"


def test_above_kth_counts_on_torchs_branch_too():
    # bfloat16 scores take the branch a GPU takes (sampled_kth, torch's comparison and count)
    g = torch.Generator().manual_seed(9)
    sites = [torch.rand(2, 5, 7, generator=g).bfloat16(), torch.rand(2, 11, generator=g).bfloat16()]
    cut, masks, kept = selection.above_kth(sites, torch.tensor([3, 40]))
    assert torch.equal(cut, kth_smallest(sites, torch.tensor([3, 40])))
    assert all(torch.equal(m, s > per_image(cut, s)) for s, m in zip(sites, masks))
    assert torch.equal(kept, sum(m.flatten(1).sum(1) for m in masks))


def test_map_images_keeps_order_on_threads():
    import threading

    both_running = threading.Barrier(2, timeout=10)  # images 0 and 1 must run at the same time

    def square(b: int) -> int:
        if b < 2:
            both_running.wait()
        return b * b

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert map_images(square, 7) == [0, 1, 4, 9, 16, 25, 36]
        assert map_images(lambda b: b, 0) == []
    finally:
        torch.set_num_threads(before)
    assert map_images(lambda b: -b, 2) == [0, -1]


def test_threads_sets_the_count_for_the_block_and_restores_it_after_an_error():
    before = torch.get_num_threads()
    other = 1 if before > 1 else 2
    with pytest.raises(RuntimeError, match="boom"), selection.threads(other):
        assert torch.get_num_threads() == other
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
