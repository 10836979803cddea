"""The ROAR/KAR experiment: a toy digits run against the library's literal path, worker independence,
its verification in both directions, and the CIFAR-10 paper path on a folder written here."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from pathlib_pw import experiments, roar
from pathlib_pw.attribution_methods import attribute
from pathlib_pw.experiments import roar as roar_experiment
from pathlib_pw.experiments import roar_tables
from pathlib_pw.experiments.lerf import method_for
from pathlib_pw.runner import cache
from pathlib_pw.runner.verification import compare_all
from pathlib_pw.training import TrainingRecipe, predict
from tests.cifar_folder import write_cifar10_folder
from tests.nets import single_thread  # noqa: F401  (autouse fixture)

ROOT = Path(__file__).resolve().parents[2]
TOY = dataclasses.replace(
    roar_experiment.config("book"),
    train_size=240,
    test_size=120,
    methods=("gradients", "pathway_grad/neuron_mct", "random", "sobel"),
    percents=(30, 70),
    seeds=(0, 1),
    recipe=TrainingRecipe(epochs=2),
    check=("pathway_grad/neuron_mct", "roar", 70, 1),
)
MEAN, ROAD = TOY.fills.index("mean"), TOY.fills.index("road")


@pytest.fixture(scope="module")
def toy_run():
    return roar_experiment.run(TOY, progress=False)


def _by_hand(seed: int):
    """Explained model ``seed`` rebuilt with the library: its split, its base model and its maps."""
    data = roar_experiment.training_data(TOY, seed)
    base = roar_experiment.train_model("digits", TOY.recipe, "cpu", data.x_train, data.y_train, seed)
    method = method_for("pathway_grad/neuron_mct", TOY.pathway_sparsity)
    maps = {}
    for part, x in (("train", data.x_train), ("test", data.x_test)):
        # the run's batches of 64: a map's float sums depend on its batch
        targets = base(x).argmax(1)
        maps[part] = torch.cat([attribute(base, x[i : i + 64], method, target=targets[i : i + 64]) for i in range(0, len(x), 64)])
    return data, base, maps


def test_a_point_equals_the_library_retraining_by_hand(toy_run, monkeypatch):
    def fit(x, y, seed):
        return roar_experiment.train_model("digits", TOY.recipe, "cpu", x, y, seed)

    points = {}
    for mode, percent, seed in (("roar", 70, 1), ("kar", 30, 0)):
        data, _, maps = _by_hand(seed)
        # explained model `seed` breaks ties with tie order `seed` and retrains with seed `seed`
        points[mode] = roar.retrain(data, maps["train"], maps["test"], percent, mode, fit, seed)
        index = (1, TOY.modes.index(mode), MEAN, TOY.percents.index(percent), TOY.seeds.index(seed))
        if seed == 0:  # the library's degrade breaks ties with tie_seed 0 by default
            assert toy_run["accuracy"][index] == points[mode].accuracy
    data, _, maps = _by_hand(1)
    x_train = roar.degrade(data.x_train, maps["train"], 70, "roar", tie_seed=1)
    x_test = roar.degrade(data.x_test, maps["test"], 70, "roar", tie_seed=1)
    logits = predict(fit(x_train, data.y_train, 1), x_test)
    # the check run is ROAR at 70 % with seed 1, mean fill
    np.testing.assert_array_equal(toy_run["check_logits"], logits.numpy())
    assert toy_run["check_accuracy"] == toy_run["accuracy"][1, 0, MEAN, 1, 1]


def test_the_road_fill_is_the_librarys_imputation(toy_run):
    data, _, maps = _by_hand(0)
    noise = roar_experiment.road_noise(TOY, 0)
    x_test = roar.degrade(data.x_test, maps["test"], 30, "kar", "road", tie_seed=0, seed=[100_000 + i for i in range(len(data.x_test))], noise=noise)
    kar = TOY.modes.index("kar")
    np.testing.assert_array_equal(toy_run["examples"][1, kar, ROAD, 0], x_test[:4].numpy())
    # ROAD's fill is not the mean: the removed pixels hold interpolated values
    assert not np.array_equal(toy_run["examples"][1, kar, ROAD, 0], toy_run["examples"][1, kar, MEAN, 0])


def test_the_controls_and_the_baseline(toy_run):
    assert toy_run["accuracy"].shape == (4, 2, 2, 2, 2) and np.isfinite(toy_run["accuracy"]).all()
    assert np.isfinite(toy_run["baseline"]).all()
    # the clean model of each seed is the explained model; the check seed's is stored with its logits
    assert toy_run["baseline"][TOY.seeds.index(TOY.check[3])] == toy_run["base_accuracy"]
    assert toy_run["baseline"][0] != toy_run["baseline"][1]  # another split and model per seed
    random = list(TOY.methods).index("random")
    # removing 70 % of the pixels at random hurts more than removing 30 %
    assert (toy_run["accuracy"][random, 0, MEAN, 1] < toy_run["accuracy"][random, 0, MEAN, 0]).all()
    assert toy_run["examples"].shape == (4, 2, 2, 2, 4, 1, 8, 8)
    removed = (toy_run["examples"][random, 0, MEAN, 1] == 0).reshape(4, -1).sum(1)
    assert (removed >= 45).all()  # 70 % of 64 pixels is 45 (a kept pixel may be 0 too)
    # a random map has no ties; Grad-CAM-like constant maps would be all ties
    assert toy_run["tie_share"].shape == (4, 2, 2, 2) and (toy_run["tie_share"][random] == 0).all()
    assert toy_run["constant_maps"].shape == (4, 2)


def test_workers_do_not_change_the_results(toy_run, monkeypatch):
    monkeypatch.setenv(roar_experiment.WORKERS_ENV, "2")
    two = roar_experiment.run(dataclasses.replace(TOY, methods=TOY.methods[:2]), progress=False)
    np.testing.assert_array_equal(two["accuracy"], toy_run["accuracy"][:2])
    np.testing.assert_array_equal(two["baseline"], toy_run["baseline"])
    monkeypatch.setenv(roar_experiment.WORKERS_ENV, "two")
    with pytest.raises(ValueError, match="PATHLIB_PW_WORKERS must be a positive integer"):
        roar_experiment.run(TOY, progress=False)


def _checks(cached, fresh):
    expected = {k: cached[k] for k in roar_experiment.CHECK_ARRAYS if k in cached}
    return {c.name: c for c in compare_all(fresh, expected, roar_experiment.TOLERANCES, roar_experiment.tolerances(expected, fresh, None))}


def test_verification_allows_rounding_and_nothing_more(toy_run):
    fresh = {k: toy_run[k].copy() for k in roar_experiment.CHECK_ARRAYS}
    # another CPU: a retraining on holes amplifies its rounding (up to 0.051 x the logits' RMS measured)
    rms = np.sqrt(np.mean(np.square(fresh["check_logits"])))
    fresh["check_logits"] = fresh["check_logits"] + np.float32(0.1 * rms) * np.sign(fresh["check_logits"])
    assert all(not c.problem for c in _checks(toy_run, fresh).values())
    # another explained model (seed 0: its own split, model, tie order and retraining) is a different result
    other = roar_experiment.run(dataclasses.replace(TOY, check_only=True, check=("pathway_grad/neuron_mct", "roar", 70, 0)), progress=False)
    fresh = {k: other[k] for k in roar_experiment.CHECK_ARRAYS}
    checks = _checks(toy_run, fresh)
    assert checks["check_logits"].problem and checks["check_data"].problem
    # other pixels removed (another share): the degraded sets' digest differs
    other = roar_experiment.run(dataclasses.replace(TOY, check_only=True, check=("pathway_grad/neuron_mct", "roar", 30, 1)), progress=False)
    assert _checks(toy_run, {k: other[k] for k in roar_experiment.CHECK_ARRAYS})["check_data"].problem


def test_an_accuracy_may_move_only_by_predictions_whose_margin_the_logits_moved_across():
    logits = np.array([[2.0, 1.0, 0.0], [1.0, 1.0005, 0.0], [0.0, 3.0, 2.9]], dtype=np.float32)
    cached = {"base_logits": logits, "base_accuracy": np.array(1 / 3), "check_logits": logits, "check_accuracy": np.array(1 / 3)}
    moved = logits.copy()
    moved[1] += np.array([0.001, -0.001, 0.0], dtype=np.float32)  # the near tie of row 1 flips
    near = dict(cached, check_logits=moved, check_accuracy=np.array(2 / 3))
    assert not _checks(cached, near)["check_accuracy"].problem
    # row 2 (margin 0.1) flipped too, but its logits did not move: not rounding
    far = dict(near, check_accuracy=np.array(1.0))
    assert _checks(cached, far)["check_accuracy"].problem
    # the same flip with unmoved logits is not allowed either
    assert _checks(cached, dict(cached, check_accuracy=np.array(2 / 3)))["check_accuracy"].problem


def test_verify_recomputes_the_check_run_from_the_cache(tmp_path, monkeypatch):
    small = dataclasses.replace(TOY, methods=("gradients", "pathway_grad/neuron_mct"), percents=(70,), modes=("roar",), seeds=(1,))
    monkeypatch.setenv(cache.RESULTS_ENV, str(tmp_path))
    monkeypatch.setattr(roar_experiment, "config", lambda profile: small)
    experiments.load_or_run("roar", "smoke", progress=False)
    result = experiments.verify("roar", "smoke")
    assert result.ok and result.replay.checks, result.text()
    # the decisions replayed are the check method's, for every training and test image
    assert len({c.key.split("|")[1] for c in result.replay.checks}) == 240 + 120
    # a cache whose check run was computed differently fails
    directory = tmp_path / "smoke" / "roar"
    cached = cache.load(directory)
    arrays = dict(cached.arrays, check_logits=cached.arrays["check_logits"] + np.float32(0.05))
    cache.save(directory, "roar", small, arrays, cached.meta, cache.load_decisions(directory))
    assert not experiments.verify("roar", "smoke").ok


def test_the_paper_path_runs_on_a_cifar10_folder(tmp_path):
    folder = write_cifar10_folder(tmp_path, per_batch=12)
    paper = roar_experiment.config("paper")
    assert paper.dataset == "cifar10" and paper.recipe.schedule == "step" and paper.recipe.epochs == 50
    toy = dataclasses.replace(
        paper,
        data_folder=str(folder),
        methods=("gradients", "gradcam", "pathway_grad/neuron_mct", "random"),
        percents=(50,),
        seeds=(0,),
        recipe=dataclasses.replace(paper.recipe, epochs=2, batch_size=16),
        check=("pathway_grad/neuron_mct", "roar", 50, 0),
        batch=16,
    )
    arrays = roar_experiment.run(toy, progress=False)
    assert arrays["train_images"] == 60 and arrays["test_images"] == 12
    assert arrays["accuracy"].shape == (4, 2, 2, 1, 1) and np.isfinite(arrays["accuracy"]).all()
    assert arrays["examples"].shape == (4, 2, 2, 1, 4, 3, 32, 32)
    table = roar_tables.auc_table(arrays)
    assert list(table.index) == [roar_tables.label(m) for m in toy.methods]


def test_the_fill_table_holds_each_fills_interval_over_the_explained_models(toy_run):
    table = roar_tables.fill_table(toy_run, "roar")
    for fill, name in (("mean", "mean fill"), ("road", "ROAD fill")):
        values = roar_tables.aucs(toy_run, "roar", fill)  # (methods, seeds)
        half = stats.t.ppf(0.975, values.shape[1] - 1) * values.std(1, ddof=1) / np.sqrt(values.shape[1])
        np.testing.assert_allclose(table[(name, "ROAR AUC")], values.mean(1))
        np.testing.assert_allclose(table[(name, "95% high")] - table[(name, "95% low")], 2 * half)
    assert list(table[("", "constant maps")]) == list(toy_run["constant_maps"].sum(1))
    assert table.loc["Gradients", ("", "authors' AUC (CIFAR-10)")] == pytest.approx(roar_tables.authors_aucs()["Gradients"])
    assert ("", "authors' AUC (CIFAR-10)") not in roar_tables.fill_table(toy_run, "kar").columns
    with pytest.raises(ValueError, match="mode must be one of"):
        roar_tables.fill_table(toy_run, "morf")


def test_the_paper_profile_without_a_folder_fails_before_any_work(monkeypatch):
    monkeypatch.delenv("PATHLIB_PW_CIFAR10", raising=False)
    monkeypatch.setattr(roar_experiment, "train_model", lambda *a, **k: pytest.fail("no training without data"))
    with pytest.raises(FileNotFoundError, match="PATHLIB_PW_CIFAR10"):
        roar_experiment.run(roar_experiment.config("paper"), progress=False)


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="modes must be a non-empty tuple of \\['roar', 'kar'\\]"):
        dataclasses.replace(TOY, modes=("morf",))
    with pytest.raises(ValueError, match="check must name one of the configured runs"):
        dataclasses.replace(TOY, check=("gradients", "roar", 50, 0))
    with pytest.raises(ValueError, match="dataset must be one of"):
        dataclasses.replace(TOY, dataset="mnist")
    with pytest.raises(ValueError, match="fills must be a tuple of \\['mean', 'road'\\] that includes 'mean'"):
        dataclasses.replace(TOY, fills=("road",))


def test_the_book_cache_verifies_without_simd():
    """Another CPU, simulated: torch, oneDNN and MKL told to use no vector instructions, another thread
    count. The pathway and pixel decisions replay, the degraded sets are identical and the retrained
    model's logits move within what retraining on holes does to rounding."""
    env = cache.other_cpu(threads=2)
    done = subprocess.run([sys.executable, "-m", "pathlib_pw", "verify", "roar"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(line.split()[:2] == ["check_data", "exact"] for line in done.stdout.splitlines()), done.stdout


def _hand_made(random_accuracy: float) -> dict[str, np.ndarray]:
    """Three maps at one removed share: Gradients 0.5, PathwayGrad 0.4, the random ranking as given."""
    accuracy = np.zeros((3, 2, 1, 1, 2))
    accuracy[:, 0, 0, 0] = [[0.5, 0.5], [0.4, 0.4], [random_accuracy, random_accuracy]]
    return {
        "methods": np.array(["gradients", "pathway_grad/neuron_mct", "random"]),
        "modes": np.array(["roar", "kar"]),
        "fills": np.array(["mean"]),
        "percents": np.array([50]),
        "seeds": np.array([0, 1]),
        "baseline": np.array([0.9, 0.9]),
        "accuracy": accuracy,
    }


def test_a_fill_passes_its_control_only_if_every_map_beats_the_random_ranking():
    maps = ["gradients", "pathway_grad/neuron_mct"]
    assert roar_tables.control_passes(_hand_made(0.8), "mean", maps)
    assert not roar_tables.control_passes(_hand_made(0.45), "mean", maps)  # PathwayGrad beats it, Gradients not
    assert not roar_tables.control_passes(_hand_made(0.5), "mean", maps)  # level is not beaten


def test_the_roar_rule_returns_each_verdict_on_hand_made_intervals():
    rule, fills = roar_tables.roar_rule, ["mean", "road"]
    above, inside, below = (0.01, 0.05), (-0.01, 0.05), (-0.05, -0.01)
    assert rule({}, fills) == (
        "not testable here",
        "a per-image random ranking lowers the accuracy at least as much as a compared map under the mean fill and the ROAD fill",
    )
    assert rule({"mean": {"A": above, "B": above}, "road": {"A": above, "B": above}}, fills) == ("holds", "")
    assert rule({"road": {"A": above, "B": above}}, fills) == ("holds", "only the road fill passes its control")
    assert rule({"mean": {"A": above, "B": inside}, "road": {"A": inside, "B": below}}, fills) == (
        "holds partly",
        "mean fill: lower than A; road fill: lower than none",
    )
    assert rule({"mean": {"A": inside, "B": below}}, fills) == ("does not hold on our model", "only the mean fill passes its control")
    assert rule({"mean": {"A": inside, "B": inside}, "road": {"A": inside, "B": inside}}, fills)[0] == (
        "inconclusive at this sample size"
    )


def test_the_roar_claim_is_decided_from_the_results(toy_run):
    # the toy run as the pixels and (relabelled to 50 %) as the mask-only run
    mask = dict(toy_run) | {"percents": np.array([50, 70]), "fills": np.array(["mean"]), "accuracy": toy_run["accuracy"][:, :, [MEAN]]}
    decided = roar_tables.evaluate_claim(toy_run, mask)
    pg = "pathway_grad/neuron_mct"
    for fill in ("mean", "road"):
        table = roar_tables.paired_differences(toy_run, pg, "roar", fill)
        assert decided.numbers[f"{fill} Gradients low"] == pytest.approx(float(table.loc["Gradients", "95% low"]))
        assert decided.numbers[f"{fill} pathway"] == pytest.approx(float(roar_tables.aucs(toy_run, "roar", fill)[1].mean()))
    passing = {
        fill: {"Gradients": (decided.numbers[f"{fill} Gradients low"], decided.numbers[f"{fill} Gradients high"])}
        for fill in ("mean", "road")
        if roar_tables.control_passes(toy_run, fill, [pg, "gradients"])
    }
    assert (decided.verdict, decided.qualifier) == roar_tables.roar_rule(passing, ["mean", "road"])
    # the masks of the compared maps only (Gradients and PathwayGrad), not the controls'
    compared = toy_run["accuracy"][:2, 0, MEAN, 0].mean(1)
    assert decided.numbers["mask only low"] == pytest.approx(float(compared.min()))
    assert decided.numbers["mask only high"] == pytest.approx(float(compared.max()))
