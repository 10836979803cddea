"""Recorded and replayed threshold decisions (pathlib_pw.decisions): the sketches against literal set
arithmetic, the replay's limits (capacity, band, exact, chaotic), image keys and scopes, and a Greedy
run whose rounding is perturbed: free-running it leaves the recorded path, replayed it stays on it."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from pathlib_pw import decisions
from pathlib_pw.decisions import DecisionLog, Rounding, session, sketches
from pathlib_pw.pathway import realized_sparsity
from pathlib_pw.thresholds import global_threshold, remove_lowest, threshold_pathway
from tests import nets

LOOSE = Rounding("threshold", capacity=0.1, band=1.0)


@pytest.mark.parametrize("seed", range(5))
def test_sketch_difference_recovers_the_symmetric_difference(seed):
    rng = np.random.default_rng(seed)
    recorded = np.flatnonzero(rng.random(200_000) < 0.3)
    fresh = np.setdiff1d(recorded, rng.choice(recorded, 40, replace=False))
    added = rng.choice(np.setdiff1d(np.arange(200_000), recorded), 25, replace=False)
    fresh = np.union1d(fresh, added)
    decoded = decisions.difference(decisions.sketch(fresh, 120), decisions.sketch(recorded, 120))
    assert decoded is not None
    only_fresh, only_recorded = decoded
    assert only_fresh == sorted(set(fresh.tolist()) - set(recorded.tolist()))
    assert only_recorded == sorted(set(recorded.tolist()) - set(fresh.tolist()))
    assert decisions.difference(decisions.sketch(recorded, 120), decisions.sketch(recorded, 120)) == ([], [])


def test_sketch_difference_gives_up_beyond_its_capacity():
    rng = np.random.default_rng(0)
    recorded = np.flatnonzero(rng.random(100_000) < 0.5)
    fresh = np.flatnonzero(rng.random(100_000) < 0.5)
    assert decisions.difference(decisions.sketch(fresh, 60), decisions.sketch(recorded, 60)) is None


def test_python_and_numpy_hash_agree():
    values = [0, 1, 12345, 2**31 + 7, 2**40]
    expected = sketches._mix(np.array(values, dtype=np.uint64), 2).tolist()
    assert [sketches._mix_int(v, 2) for v in values] == expected


def test_minhash_overlap_estimate_is_unbiased_within_its_error():
    rng = np.random.default_rng(1)
    z = []
    for _ in range(20):
        a = np.flatnonzero(rng.random(300_000) < 0.1)
        b = np.union1d(a[rng.random(a.size) < 0.97], np.flatnonzero(rng.random(300_000) < 0.002))
        truth = np.intersect1d(a, b).size / np.union1d(a, b).size
        j, se = decisions.overlap_estimate(decisions.minhash(a), decisions.minhash(b))
        z.append((j - truth) / se)
    assert abs(np.mean(z)) < 1.0 and 0.5 < np.std(z) < 1.6


def _scores(seed: int = 0, batch: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, 4, 10, 10, generator=g), torch.rand(batch, 300, generator=g)]


def _near_cut_swap(scores: list[torch.Tensor], p: float) -> tuple[list[torch.Tensor], int]:
    """The scores with the two neurons on either side of image 0's cut exchanged: one changes."""
    flat = torch.cat([s[0].flatten() for s in scores])
    order = flat.argsort()
    k = int(p / 100 * (flat.numel() - 1))
    below, above = int(order[k]), int(order[k + 1])
    swapped = flat.clone()
    swapped[below], swapped[above] = flat[above], flat[below]
    out = [s.clone() for s in scores]
    start = 0
    for s, o in zip(scores, out):
        n = s[0].numel()
        o[0].view(-1).copy_(swapped[start : start + n])
        start += n
    return out, below


def test_outside_a_session_masks_pass_through():
    scores = _scores()
    masks, cut = global_threshold(scores, torch.tensor([50.0, 50.0], dtype=torch.float64))
    direct = [s > cut.view(-1, *([1] * (s.dim() - 1))) for s in scores]
    assert all(torch.equal(a, b) for a, b in zip(masks, direct))


def test_replay_restores_the_recorded_mask_and_counts_the_change():
    scores, level = _scores(), torch.tensor([50.0, 50.0], dtype=torch.float64)
    with decisions.recording() as log, decisions.criterion(LOOSE):
        recorded, _ = global_threshold(scores, level)
    perturbed, neuron = _near_cut_swap(scores, 50.0)
    free, _ = global_threshold(perturbed, level)
    assert sum(int((a != b).sum()) for a, b in zip(free, recorded)) == 2  # one out, one in
    with decisions.replaying(log) as report, decisions.criterion(LOOSE):
        replayed, _ = global_threshold(perturbed, level)
    assert all(torch.equal(a, b) for a, b in zip(replayed, recorded))
    assert report.ok and report.changed == 2
    assert [c.changed for c in report.checks] == [2, 0]
    assert report.checks[0].worst_band < 0.01


SHARP_TEST = Rounding("threshold", capacity=1e-3, band=1.0)


def test_replay_rejects_more_changes_than_the_capacity():
    scores, level = _scores(), torch.tensor([50.0, 50.0], dtype=torch.float64)
    tight = Rounding("threshold", capacity=1e-4, band=1.0)  # 1 neuron of 700
    with decisions.recording() as log, decisions.criterion(tight):
        global_threshold(scores, level)
    shifted = torch.tensor([51.0, 50.0], dtype=torch.float64)  # 1 % of the neurons more removed
    with decisions.replaying(log) as report, decisions.criterion(tight):
        global_threshold(scores, shifted)
    assert not report.ok
    assert "more neurons than rounding can explain" in report.checks[0].problem or "changed (at most" in report.checks[0].problem
    assert report.checks[1].ok


def test_a_kept_set_of_the_same_size_but_other_members_is_rejected_and_counts_nothing_restored():
    # what TF32 convolutions on a GPU did: the same number of neurons kept, thousands of others
    scores, level = _scores(), torch.tensor([50.0, 50.0], dtype=torch.float64)
    with decisions.recording() as log, decisions.criterion(SHARP_TEST):
        global_threshold(scores, level)
    with decisions.replaying(log) as report, decisions.criterion(SHARP_TEST):
        global_threshold([-s for s in scores], level)
    assert not report.ok and report.changed == 0
    assert "kept now" in report.checks[0].problem


def test_replay_rejects_a_change_far_from_the_cut():
    scores, level = _scores(), torch.tensor([50.0, 50.0], dtype=torch.float64)
    narrow = Rounding("threshold", capacity=0.01, band=0.05)
    with decisions.recording() as log, decisions.criterion(narrow):
        global_threshold(scores, level)
    moved = [s.clone() for s in scores]
    top = int(moved[1][0].argmax())
    moved[1][0, top] = 0.0  # the best neuron of image 0 drops below the cut
    with decisions.replaying(log) as report, decisions.criterion(narrow):
        global_threshold(moved, level)
    check = report.checks[0]
    assert not check.ok and "from the cut" in check.problem and check.worst_band > 0.3


def test_exact_decisions_allow_no_change():
    scores, level = _scores(), torch.tensor([50.0, 50.0], dtype=torch.float64)
    with decisions.recording() as log:  # the default rounding is exact
        global_threshold(scores, level)
    perturbed, _ = _near_cut_swap(scores, 50.0)
    with decisions.replaying(log) as report:
        global_threshold(perturbed, level)
    assert not report.ok and report.checks[0].problem


def test_chaotic_decisions_are_compared_by_overlap_and_not_restored():
    chaotic = Rounding("chaotic", overlap=0.95)
    scores, level = _scores(batch=1), torch.tensor([50.0], dtype=torch.float64)
    with decisions.recording() as log, decisions.criterion(chaotic):
        global_threshold(scores, level)
    perturbed, _ = _near_cut_swap(scores, 50.0)
    with decisions.replaying(log) as report, decisions.criterion(chaotic):
        masks, _ = global_threshold(perturbed, level)
    check = report.checks[0]
    assert check.ok and not check.restored and 0.9 < check.overlap <= 1.0
    fresh, _ = global_threshold(perturbed, level)
    assert all(torch.equal(a, b) for a, b in zip(masks, fresh))
    with decisions.replaying(log) as report, decisions.criterion(chaotic):
        global_threshold(scores, torch.tensor([80.0], dtype=torch.float64))
    assert not report.ok and "overlaps the recorded one" in report.checks[0].problem


def test_image_keys_let_a_replay_batch_differently():
    scores, level = _scores(batch=3), torch.tensor([30.0, 50.0, 70.0], dtype=torch.float64)
    with decisions.recording() as log, decisions.criterion(LOOSE), decisions.images([10, 11, 12]):
        recorded, _ = global_threshold(scores, level)
    one = [s[1:2] for s in scores]
    with decisions.replaying(log, complete=False) as report, decisions.criterion(LOOSE), decisions.images([11]):
        replayed, _ = global_threshold(one, level[1:2])
    assert report.ok and [c.key for c in report.checks] == ["|11|0"]
    assert all(torch.equal(a, b[1:2]) for a, b in zip(replayed, recorded))
    with decisions.replaying(log) as report, decisions.criterion(LOOSE), decisions.images([11]):
        global_threshold(one, level[1:2])
    assert sorted(report.unused) == ["|10|0", "|12|0"] and not report.ok
    with decisions.replaying(log) as report, decisions.criterion(LOOSE), decisions.images([13]):
        global_threshold(one, level[1:2])
    assert report.missing == ["|13|0"] and not report.ok


def test_scopes_and_ordinals_name_each_decision():
    scores, level = _scores(batch=1), torch.tensor([50.0], dtype=torch.float64)
    with decisions.recording(only=[0]) as log, decisions.images([0]):
        with decisions.scope("a"), decisions.scope("b"):
            global_threshold(scores, level)
            global_threshold(scores, level)
        with decisions.scope("c"):
            global_threshold(scores, level)
    assert list(log.records) == ["a/b|0|0", "a/b|0|1", "c|0|0"]
    with decisions.recording(only=[1]) as log, decisions.images([0]):
        global_threshold(scores, level)
    assert len(log) == 0
    with pytest.raises(ValueError, match="image keys"):
        with decisions.recording(), decisions.images([0, 1]):
            global_threshold(scores, level)


def test_decision_log_round_trips_through_a_file(tmp_path):
    scores = _scores()
    with decisions.recording() as log:
        with decisions.criterion(LOOSE):
            global_threshold(scores, torch.tensor([40.0, 60.0], dtype=torch.float64))
        with decisions.criterion(Rounding("chaotic", overlap=0.9)):
            global_threshold(scores, torch.tensor([40.0, 60.0], dtype=torch.float64))
    log.save(tmp_path / "d.npz")
    back = DecisionLog.load(tmp_path / "d.npz")
    assert list(back.records) == list(log.records)
    for key, record in log.records.items():
        other = back.records[key]
        assert (other.kind, other.neurons, other.kept, other.cut, other.complement) == (
            record.kind, record.neurons, record.kept, record.cut, record.complement)
        if record.sketch is None:
            assert other.sketch is None
        else:
            for field in ("count", "keys", "checks"):
                assert np.array_equal(getattr(other.sketch, field), getattr(record.sketch, field))
        assert np.array_equal(other.signature, record.signature)
        assert np.array_equal(other.site_kept, record.site_kept)


def test_remove_lowest_is_replayed_too():
    scores = _scores(batch=1)
    count = torch.tensor([350])
    with decisions.recording() as log, decisions.criterion(LOOSE):
        recorded = remove_lowest(scores, count)
    perturbed, _ = _near_cut_swap(scores, 349 / 699 * 100)
    with decisions.replaying(log) as report, decisions.criterion(LOOSE):
        replayed = remove_lowest(perturbed, count)
    assert report.ok and report.changed == 2
    assert all(torch.equal(a, b) for a, b in zip(replayed, recorded))


def test_greedy_stays_on_the_recorded_path_when_rounding_differs(monkeypatch):
    """Greedy's 20 rounds each re-score through the masked net. Noise on the gradients (3 %: more
    than rounding gives, so that the tiny net's few neurons change) moves neurons near each round's
    cut and, free-running, every later round. Replayed, each round's changes are restored and the
    final path is the recorded one."""
    greedy = sys.modules["pathlib_pw.criteria.greedy"]
    model, x = nets.tiny_cnn(), nets.images(2)
    loose = Rounding("threshold", capacity=0.05, band=5.0)
    with decisions.recording() as log, decisions.criterion(loose):
        recorded = greedy.greedy(model, x, [torch.full((2,), 20.0, dtype=torch.float64)], None, "intended")[0]
    scoring = sys.modules["pathlib_pw.pathway"]  # where Greedy's rounds take their activations and gradients
    real = scoring.activations_and_gradients
    g = torch.Generator().manual_seed(0)

    def noisy(*args, **kwargs):
        logits, acts, grads, names, tgt = real(*args, **kwargs)
        grads = [gr * (1 + 3e-2 * torch.randn(gr.shape, generator=g, dtype=gr.dtype)) for gr in grads]
        return logits, acts, grads, names, tgt

    monkeypatch.setattr(scoring, "activations_and_gradients", noisy)
    free = greedy.greedy(model, x, [torch.full((2,), 20.0, dtype=torch.float64)], None, "intended")[0]
    assert any(not torch.equal(a, b) for a, b in zip(free.masks, recorded.masks))
    with decisions.replaying(log) as report, decisions.criterion(loose):
        replayed = greedy.greedy(model, x, [torch.full((2,), 20.0, dtype=torch.float64)], None, "intended")[0]
    assert report.ok and report.changed > 0 and len(report.checks) == 2 * 20
    assert all(torch.equal(a, b) for a, b in zip(replayed.masks, recorded.masks))


def test_greedys_rounding_class_admits_the_measured_burst_and_not_a_real_change():
    """BURSTY (Greedy's rounds): a ReLU of the masked network that flips under other rounding moved up
    to 4,748 of MobileNetV2's 6.1 M neurons at one round's cut (0.078 %); every score a few percent
    off. A burst of that share, every changed neuron at the cut, replays and is restored; a cut
    shifted by 0.5 % of the neurons (a real change of the sparsity) does not."""
    from pathlib_pw.criteria.spec import BURSTY

    g = torch.Generator().manual_seed(3)
    scores = [torch.rand(1, 64, 50, 50, generator=g), torch.rand(1, 40_000, generator=g)]  # 200,000 neurons
    level = torch.tensor([50.0], dtype=torch.float64)
    with decisions.recording() as log, decisions.criterion(BURSTY):
        recorded = global_threshold(scores, level)[0]
    n = sum(s.numel() for s in scores)
    burst = int(4_748 / 6.1e6 * n)  # the measured share: 155 of 200,000
    flat = torch.cat([s.flatten() for s in scores])
    order = flat.argsort()
    k = int(0.5 * (n - 1))
    nudged = flat.clone()
    # the burst/2 neurons just below the cut move just above it and vice versa (rounding of a few percent)
    below, above = order[k - burst // 2 + 1 : k + 1], order[k + 1 : k + 1 + burst // 2]
    nudged[below], nudged[above] = flat[above], flat[below]
    fresh = list(nudged.split([s.numel() for s in scores]))
    fresh = [f.view_as(s) for f, s in zip(fresh, scores)]
    with decisions.replaying(log) as report, decisions.criterion(BURSTY):
        replayed = global_threshold(fresh, level)[0]
    assert report.ok, report.problems()
    assert report.changed == 2 * (burst // 2) and all(torch.equal(a, b) for a, b in zip(replayed, recorded))
    with decisions.replaying(log) as report, decisions.criterion(BURSTY):
        global_threshold(scores, torch.tensor([50.5], dtype=torch.float64))
    assert not report.ok


def test_a_record_sketched_for_a_smaller_capacity_says_to_recompute():
    """A cache recorded before a criterion's capacity grew holds smaller sketches: a difference they
    cannot decode is reported with what to do; one they can decode still replays."""
    g = torch.Generator().manual_seed(4)
    scores = [torch.rand(1, 20_000, generator=g)]
    level = torch.tensor([50.0], dtype=torch.float64)
    small, large = Rounding("threshold", capacity=1e-3, band=5.0), Rounding("threshold", capacity=1e-2, band=5.0)
    with decisions.recording() as log, decisions.criterion(small):
        global_threshold(scores, level)
    with decisions.replaying(log) as report, decisions.criterion(large):
        global_threshold(scores, torch.tensor([50.5], dtype=torch.float64))  # 100 changes: the sketch decodes about 20
    assert not report.ok and "recompute the cache with --force" in report.checks[0].problem
    with decisions.replaying(log) as report, decisions.criterion(large):
        global_threshold(scores, torch.tensor([50.04], dtype=torch.float64))  # 8 changes
    assert report.ok and report.changed == 8
    with decisions.recording() as log, decisions.criterion(large):
        global_threshold(scores, level)
    with decisions.replaying(log) as report, decisions.criterion(large):
        global_threshold(scores, torch.tensor([50.5], dtype=torch.float64))
    assert report.ok and report.changed == 100  # sketched for the larger capacity: decoded and restored


# ---- the replay's bookkeeping on a 12-neuron example: two sites of 6 neurons, one image --------------

TWELVE = [torch.arange(6, dtype=torch.float64).view(1, 6), torch.arange(6, 12, dtype=torch.float64).view(1, 6)]
CUT = torch.tensor([5.5], dtype=torch.float64)  # between the last neuron of site 0 and the first of site 1


def _twelve_masks(flipped: list[int]) -> list[torch.Tensor]:
    """The mask that keeps neurons 6..11 (site 1), with the neurons ``flipped`` (pooled indices) inverted."""
    flat = torch.arange(12) >= 6
    flat[flipped] = ~flat[flipped]
    return [flat[:6].view(1, 6).clone(), flat[6:].view(1, 6).clone()]


def _replay_twelve(flipped: list[int], rounding: Rounding) -> tuple[list[torch.Tensor], decisions.ReplayReport]:
    with decisions.recording() as log, decisions.criterion(rounding):
        decisions.checkpoint(TWELVE, _twelve_masks([]), CUT)
    with decisions.replaying(log) as report, decisions.criterion(rounding):
        masks = decisions.checkpoint(TWELVE, _twelve_masks(flipped), CUT)
    return masks, report


@pytest.mark.parametrize("flipped", [[5], [6], [5, 6], [0], [11], [0, 5, 6, 11]])
def test_replay_repairs_each_flip_in_its_own_site_at_the_site_boundary(flipped):
    """Neuron 5 is the last of site 0, neuron 6 the first of site 1: each repair must land in the site
    that holds the neuron, at its local index, so that the repaired mask equals the recorded one site by
    site (a repair sent to the neighbouring site, or dropped, still passes the replay's own check)."""
    loose = Rounding("threshold", capacity=0.5, band=100.0)  # 6 of 12 may change, anywhere
    masks, report = _replay_twelve(flipped, loose)
    assert report.ok, report.problems()
    assert report.changed == len(flipped)
    recorded = _twelve_masks([])
    for site in range(2):
        assert torch.equal(masks[site], recorded[site]), (site, masks[site].tolist(), recorded[site].tolist())


def test_replay_allows_exactly_the_capacity_and_rejects_one_more():
    """capacity 0.5 of 12 neurons: 6 may change (above the floor of 3). 6 changes replay, 7 do not.
    (Neurons 4 and 5 share all three sketch cells, so no set here holds both: the sketch could not
    tell them apart and the replay would fail for that reason instead.)"""
    loose = Rounding("threshold", capacity=0.5, band=100.0)
    masks, report = _replay_twelve([0, 1, 2, 3, 5, 6], loose)
    assert report.ok, report.problems()
    assert report.checks[0].allowed == 6 and report.checks[0].changed == 6
    assert all(torch.equal(a, b) for a, b in zip(masks, _twelve_masks([])))
    _, report = _replay_twelve([0, 1, 2, 3, 5, 6, 7], loose)
    assert not report.ok
    assert report.checks[0].problem == "7 neurons changed (at most 6 may, threshold)"


@pytest.mark.parametrize(
    ("capacity", "allowed"),
    [(0.01, 3), (0.15, 3), (0.25, 3), (0.3, 4)],  # capacity x 12 = 0.12, 1.8, 3, 3.6: rounded up
)
def test_replay_allows_at_least_min_changes(capacity, allowed):
    """The floor: a capacity worth fewer than 3 neurons (rounded up) (MIN_CHANGES: the digits CNN sees 2 flips on a
    build without SIMD) still allows 3; a capacity worth more is not capped by the floor."""
    assert decisions.MIN_CHANGES == 3
    rounding = Rounding("threshold", capacity=capacity, band=100.0)
    _, report = _replay_twelve(list(range(allowed)), rounding)
    assert report.ok, report.problems()
    assert report.checks[0].allowed == allowed
    _, report = _replay_twelve(list(range(allowed + 1)), rounding)
    assert not report.ok
    assert report.checks[0].problem == f"{allowed + 1} neurons changed (at most {allowed} may, threshold)"


def test_widened_bounds_measure_what_the_real_bounds_refuse():
    """decisions.widened (scripts/measure_rounding.py): the same shift that the criterion's bounds
    refuse is decoded and counted under widened ones, with the sketch sized for them."""
    scores, level = _scores(), torch.tensor([50.0, 50.0], dtype=torch.float64)
    tight = Rounding("threshold", capacity=1e-4, band=1.0)
    shifted = torch.tensor([51.0, 50.0], dtype=torch.float64)  # 1 % of the neurons more removed

    def replay(factor):
        with decisions.widened(factor), decisions.criterion(tight):
            with decisions.recording() as log:
                global_threshold(scores, level)
            with decisions.replaying(log) as report:
                global_threshold(scores, shifted)
        return log, report

    narrow_log, narrow = replay(1)
    wide_log, wide = replay(200)
    assert not narrow.ok and wide.ok
    assert wide.checks[0].changed == 7 and wide.checks[0].allowed == 14  # 1 % of 700; 200 x 1e-4 x 700
    assert wide_log.records["|0|0"].sketch.cells > narrow_log.records["|0|0"].sketch.cells
    with decisions.criterion(tight):
        assert session._active_rounding() == tight  # restored after the block
    with pytest.raises(ValueError, match="factor must be a number >= 1"):
        decisions.widened(0.5)


def test_the_package_exports_the_names_of_the_module_it_was_split_from():
    """pathlib_pw.decisions was one module until issue 29; its public names (``__all__`` then, listed
    literally) and the helpers used by name elsewhere are all still reached through the package."""
    before = {
        "EXACT", "Check", "DecisionLog", "ReplayReport", "Rounding", "Sketch", "checkpoint", "criterion", "images",
        "recording", "replaying", "rows", "scope", "widened",
    }
    assert set(decisions.__all__) == before and len(decisions.__all__) == len(before)
    for name in before | {"MIN_CHANGES", "Record", "sketch", "difference", "minhash", "overlap_estimate"}:
        assert not isinstance(getattr(decisions, name), type(decisions)), name  # the object, not a submodule
    assert decisions.checkpoint.__module__ == "pathlib_pw.decisions.hook"
    assert not hasattr(decisions, "replayed_keys") and not hasattr(decisions, "summary")  # nothing called them


def test_the_threshold_functions_call_checkpoint_through_the_package(monkeypatch):
    """Callers look ``decisions.checkpoint`` up at call time, so a replacement on the package is the one called."""
    seen = []

    def spy(scores, masks, cut, near_zero=None, scale=None):
        seen.append(len(masks))
        return masks

    monkeypatch.setattr(decisions, "checkpoint", spy)
    global_threshold(_scores(), torch.tensor([50.0, 50.0], dtype=torch.float64))
    remove_lowest(_scores(), torch.tensor([100, 100]))
    assert seen == [2, 2]


def test_threshold_pathways_sparsity_counts_the_replayed_masks_not_the_selections():
    # the selection counts what it keeps; a replay that moves neurons makes those counts stale, and
    # the pathway's sparsity must then be the count of the masks it holds
    scores, level = _scores(), torch.tensor([50.0, 50.0], dtype=torch.float64)
    names = [f"site{i}" for i in range(len(scores))]
    with decisions.recording() as log, decisions.criterion(LOOSE):
        recorded = threshold_pathway(scores, level, names, "test")
    assert torch.equal(recorded.sparsity, realized_sparsity(recorded.masks))
    perturbed, _ = _near_cut_swap(scores, 50.0)
    free = threshold_pathway(perturbed, level, names, "test")
    with decisions.replaying(log) as report, decisions.criterion(LOOSE):
        replayed = threshold_pathway(perturbed, level, names, "test")
    assert report.changed == 2 and all(torch.equal(a, b) for a, b in zip(replayed.masks, recorded.masks))
    assert not all(torch.equal(a, b) for a, b in zip(free.masks, recorded.masks))
    for path in (free, replayed):
        assert torch.equal(path.sparsity, realized_sparsity(path.masks))
    # a replay that removes one neuron more than the selection did: the count must follow the masks
    real = decisions.checkpoint

    def one_more_removed(scores, masks, cut, near_zero=None, scale=None):  # type: ignore[no-untyped-def]
        out = [m.clone() for m in real(scores, masks, cut, near_zero, scale)]
        out[0].view(out[0].shape[0], -1)[0, out[0][0].flatten().nonzero()[0]] = False
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decisions, "checkpoint", one_more_removed)
        fewer = threshold_pathway(scores, level, names, "test")
    assert torch.equal(fewer.sparsity, realized_sparsity(fewer.masks))
    assert float(fewer.sparsity[0]) > float(recorded.sparsity[0]) and float(fewer.sparsity[1]) == float(recorded.sparsity[1])
