"""pathlib_pw.selection: the order statistics, counts and per-image threads behind the threshold, against
sorts, plain sums and a barrier."""

from __future__ import annotations

import pytest
import torch

from pathlib_pw import selection
from pathlib_pw.selection import count_true, kth_smallest, map_images, per_image


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
