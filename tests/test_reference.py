"""The authors' numbers as shipped in the package (pathlib_pw/reference_data/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pathlib_pw
from pathlib_pw import reference
from pathlib_pw.reference import TABLES, authors_overlap, authors_sanity, authors_table, reference_file


def test_every_table_loads_with_its_columns():
    for name in TABLES:
        assert len(authors_table(name)) > 0
    assert list(authors_table("roar").columns) == ["dataset", "method", "percent_pixels_removed", "test_accuracy_percent"]


def test_unknown_table_names_the_choices():
    with pytest.raises(ValueError, match="name must be one of"):
        authors_table("imagenet")
    with pytest.raises(ValueError, match="name must be one of"):
        reference_file("imagenet")


def test_tables_are_package_data_with_their_provenance():
    folder = Path(pathlib_pw.__file__).parent / reference.REFERENCE_FOLDER
    for name in TABLES:
        assert Path(str(reference_file(name))) == folder / f"{name}_authors.csv"
    assert "Known slips" in (folder / "README.md").read_text()
    # the old location keeps only a pointer
    old = Path(pathlib_pw.__file__).parents[1] / "data" / "reference"
    assert sorted(p.name for p in old.iterdir()) == ["README.md"]


def test_a_missing_table_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(reference, "REFERENCE_FOLDER", "no_such_folder")
    with pytest.raises(FileNotFoundError, match="reference table 'roar' is missing from the installed package"):
        authors_table("roar")


def test_overlap_label_swap_is_undone_only_when_asked():
    printed, _ = authors_overlap(corrected=False)
    corrected, dead = authors_overlap(corrected=True)
    # the poster prints 5.26 % (= 1/19, two random 10 % sets) under "Greedy"
    assert printed.loc["NeuronMCT", "Greedy"] == pytest.approx(5.26)
    assert corrected.loc["NeuronMCT", "Random"] == pytest.approx(5.26)
    assert corrected.loc["Greedy", "Random"] == printed.loc["Greedy", "Random"] == pytest.approx(9.74)
    assert corrected.loc["NeuronIntGrad", "NeuronMCT"] == pytest.approx(65.91)
    # plots.py also swaps NeuronIntGrad and NeuronMCT: the values printed under one belong to the other
    assert printed.loc["NeuronIntGrad", "DGR(init=1)"] == pytest.approx(29.59)
    assert corrected.loc["NeuronIntGrad", "DGR(init=1)"] == pytest.approx(29.84)
    assert corrected.loc["NeuronMCT", "DGR(init=1)"] == pytest.approx(29.59)
    assert corrected.loc["NeuronIntGrad", "Greedy"] == pytest.approx(6.76)
    assert corrected.loc["NeuronMCT", "Greedy"] == pytest.approx(6.68)
    assert np.abs(corrected.to_numpy() - printed.loc[corrected.index, corrected.columns].to_numpy()).max() > 0
    np.testing.assert_allclose(corrected.to_numpy(), corrected.to_numpy().T)
    assert np.all(np.diag(corrected.to_numpy()) == 100)
    assert dead["NeuronMCT"] == 0 and dead["DGR(init=r)"] == pytest.approx(66.99)
    # the dead-share bars swap only NeuronIntGrad and NeuronMCT: Random keeps VGG16's base dead rate
    assert dead["Random"] == pytest.approx(59.51) and dead["Greedy"] == pytest.approx(68.78)
    assert authors_overlap(corrected=False)[1].to_dict() == {**dead.to_dict()}


def test_authors_sanity_curves_in_their_stage_order():
    import pandas as pd

    with reference_file("sanity_checks_resnet50").open() as handle:
        raw = pd.read_csv(handle)
    ssim = authors_sanity("ssim")
    assert list(ssim.index) == ["original", "linear"] + [f"bottleneck_{i}" for i in range(15, -1, -1)] + ["conv1"]
    assert sorted(ssim.columns) == ["GBP", "GradCAM", "Gradients", "InputIntGrad", "InputMCT", "NeuronIntGrad", "NeuronMCT"]
    assert ssim.loc["linear", "GradCAM"] == pytest.approx(0.780028)  # the file's row, by hand
    for row in raw.sample(20, random_state=0).itertuples():
        assert authors_sanity(row.metric).loc[row.randomized_up_to, row.method] == row.mean_over_1000_images
    with pytest.raises(ValueError, match="HOG"):
        authors_sanity("hog_pearson")
