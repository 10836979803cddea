"""``python -m pathlib_pw explain``: PathwayGrad of the user's own image file, beside the baselines."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from pathlib_pw import explain as explain_module
from pathlib_pw import imagenet, models
from pathlib_pw.__main__ import main
from pathlib_pw.criteria import extract_pathway
from pathlib_pw.data import load_photo
from pathlib_pw.explain import ExplainError, explain
from pathlib_pw.saliency import pathway_grad, saliency

matplotlib.use("Agg")

pytestmark = pytest.mark.skipif(
    "mobilenet_v2" not in models.available_pretrained(), reason="MobileNetV2's ImageNet weights are not installed"
)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A real photo (chelsea the cat) written as a PNG file, as a user would have it."""
    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    Image.fromarray(load_photo("chelsea")).save(path)
    return path


def _reference(path, target=None):
    """The library called directly on the same file: PIL -> preprocess -> NeuronMCT at 75 % -> PathwayGrad."""
    model = models.load_model("mobilenet_v2")
    x = imagenet.preprocess(np.asarray(Image.open(path).convert("RGB")))
    with torch.no_grad():
        predicted = int(model(x).argmax(1))
    t = predicted if target is None else target
    path_ = extract_pathway(model, x, "neuron_mct", 75.0, target=t)
    return model, x, t, pathway_grad(model, x, path_, target=t)[0].numpy()


def test_pathway_map_equals_the_library_on_the_same_image(photo):
    figure, maps, info = explain(photo, methods=("gradients",))
    model, x, t, expected = _reference(photo)
    assert info["target"] == info["predicted"] == t
    assert info["class_name"] == imagenet.imagenet_class_names()[t]
    assert sorted(maps) == ["gradients", "pathway_grad"]
    np.testing.assert_array_equal(maps["pathway_grad"], expected)
    np.testing.assert_array_equal(maps["gradients"], saliency(model, x, "gradients", target=t)[0].numpy())
    assert maps["pathway_grad"].shape == (224, 224) and np.abs(maps["pathway_grad"]).max() == pytest.approx(1.0)
    # the image shown is what the model saw
    np.testing.assert_allclose(info["image"], imagenet.denormalize(x[0]).permute(1, 2, 0).numpy())
    # every text of the figure is readable at its saved size, and the class is in the title
    texts = [t for t in figure.findobj(matplotlib.text.Text) if t.get_text()]
    assert min(t.get_fontsize() for t in texts) >= 11
    assert any(info["class_name"] in t.get_text() for t in texts)
    matplotlib.pyplot.close(figure)


def test_a_target_by_name_or_index_is_explained(photo):
    names = imagenet.imagenet_class_names()
    _, maps, info = explain(photo, methods=(), target="tabby")
    assert info["target"] == names.index("tabby") and info["class_name"] == "tabby"
    np.testing.assert_array_equal(maps["pathway_grad"], _reference(photo, target=names.index("tabby"))[3])
    with pytest.raises(ExplainError, match="target must be a class index 0-999"):
        explain(photo, methods=(), target=1000)
    with pytest.raises(ExplainError, match="target .*'no such class'"):
        explain(photo, methods=(), target="no such class")


def test_gradcam_is_skipped_with_a_note_where_the_model_has_no_known_layer(photo, monkeypatch):
    monkeypatch.setattr(explain_module, "GRADCAM_LAYERS", {"VGG": "features"})
    figure, maps, info = explain(photo, methods=("gradcam",))
    assert "gradcam" not in maps and "no known Grad-CAM layer for MobileNetV2" in info["skipped"]["gradcam"]
    matplotlib.pyplot.close(figure)


def test_cli_writes_a_png_figure(photo, tmp_path, capsys):
    out = tmp_path / "explained.png"
    assert main(["explain", str(photo), "--method", "gradients", "--method", "gradcam", "-o", str(out)]) == 0
    with Image.open(out) as saved:
        assert saved.format == "PNG"
        width, height = saved.size
    assert 800 <= width <= 3000 and 150 <= height <= 1000  # four panels in a row at the book's dpi
    assert "Egyptian cat" in capsys.readouterr().out


def test_cli_sparsity_as_a_share_runs_but_is_passed_on_as_percent(photo, tmp_path, monkeypatch):
    seen = []
    real = explain_module.extract_pathway

    def spy(model, x, criterion, sparsity, **kwargs):
        seen.append(sparsity)
        return real(model, x, criterion, sparsity, **kwargs)

    monkeypatch.setattr(explain_module, "extract_pathway", spy)
    with pytest.warns(UserWarning, match=r"sparsity=0.75 is 0.75 %; did you mean 75 %\?"):
        assert main(["explain", str(photo), "--sparsity", "0.75", "--method", "gradients", "-o", str(tmp_path / "a.png")]) == 0
    assert seen == [0.75]  # not rescaled here: the library warns that 0.75 is 0.75 %


def test_cli_a_pathway_that_keeps_nothing_is_a_usage_error(photo, tmp_path, monkeypatch, capsys):
    from pathlib_pw.criteria.checks import EmptyPathwayError

    def empty(*args, **kwargs):
        raise EmptyPathwayError("the neuron_mct pathway keeps no neuron at all")

    monkeypatch.setattr(explain_module, "extract_pathway", empty)
    message = _usage_error(capsys, ["explain", str(photo), "--sparsity", "99.9", "-o", str(tmp_path / "a.png")])
    assert "--sparsity 99.9: the neuron_mct pathway keeps no neuron at all; use a lower sparsity" in message


def _usage_error(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    assert message.startswith("python -m pathlib_pw explain: error: "), err
    return message


def test_cli_missing_folder_and_unreadable_files_are_one_line_errors(tmp_path, capsys):
    out = str(tmp_path / "o.png")
    missing = tmp_path / "nope.jpg"
    assert str(missing) in _usage_error(capsys, ["explain", str(missing), "-o", out])
    assert "is a folder" in _usage_error(capsys, ["explain", str(tmp_path), "-o", out])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    message = _usage_error(capsys, ["explain", str(text), "-o", out])
    assert str(text) in message and "cannot be read as an image" in message
    truncated = tmp_path / "broken.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    assert str(truncated) in _usage_error(capsys, ["explain", str(truncated), "-o", out])
    assert not (tmp_path / "o.png").exists()


def test_cli_bad_options_are_one_line_errors(photo, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "o.png")
    assert "--device" in _usage_error(capsys, ["explain", str(photo), "--device", "bogus", "-o", out])
    assert "--sparsity" in _usage_error(capsys, ["explain", str(photo), "--sparsity", "100", "-o", out])
    assert "--target" in _usage_error(capsys, ["explain", str(photo), "--target", "5000", "-o", out])
    assert "--method" in _usage_error(capsys, ["explain", str(photo), "--method", "bogus", "-o", out])
    assert "-o" in _usage_error(capsys, ["explain", str(photo), "-o", str(tmp_path / "no" / "o.png")])
    # a model whose weights are not installed: what is missing and how to provide it
    monkeypatch.setattr(models, "available_pretrained", lambda: ["mobilenet_v2"])
    message = _usage_error(capsys, ["explain", str(photo), "--model", "vgg16", "-o", out])
    where, how = models.weights_hint("vgg16")
    assert message.startswith("python -m pathlib_pw explain: error: --model 'vgg16'") and where in message and how in message
