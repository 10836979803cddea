"""The public API's one convention (README): argument order and names, units, and the old spellings.

Functions that run the model take ``(model, x, subject, ...)`` with ``target`` keyword-only;
``criterion`` names a pathway criterion, ``method`` an attribution method, ``path`` a Pathway (never
``pathway``); amounts removed are ``sparsity``/``sparsities``/``percent``/``percents`` in percent;
pure measures take no model. Old spellings still work for one release: each gives a FutureWarning
and the same result as the new spelling.
"""

from __future__ import annotations

import importlib
import inspect
import types
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

import pathlib_pw
from pathlib_pw import attribution_methods, criteria, metrics, removal, roar
from pathlib_pw.pathway import Pathway
from pathlib_pw.sites import record_activations
from tests import nets
from tests.nets import single_thread  # noqa: F401  (autouse fixture)

saliency = importlib.import_module("pathlib_pw.saliency")  # pathlib_pw.saliency is the function
MODULES: tuple[types.ModuleType, ...] = (metrics, saliency, attribution_methods, removal, roar, criteria)

# where a parameter named ``method`` is an attribution method (the convention's only use of the name)
METHOD_IS_ATTRIBUTION = {
    "attribute": "a registered attribution method's name or an attribution method",
    "saliency": "one of the baseline attribution methods",
    "baseline_method": "the baseline attribution method to wrap",
    "quantus_explain_func": "a registered attribution method's name or an attribution method",
}
# not yet renamed, owned by the lead (reported): criteria.spec(method) takes a criterion's name
PENDING_METHOD: dict[str, str] = {}
# functions that follow the attribution-method protocol (model, x, target) -> maps, called positionally
# by attribute(): their target stays positional, or user-registered methods would break
ATTRIBUTION_PROTOCOL = {"sobel": "a registered attribution method (model, x, target) -> maps"}
# not yet keyword-only, owned elsewhere (reported): linearity.first_order_error(..., path=None, target=None)
PENDING_TARGET: dict[str, str] = {}
# where ``criterion`` is a pathway criterion's name
CRITERION_FUNCTIONS = ("extract_pathway", "extract_pathways", "pathway_grad_method")
# pure measures and transforms: they take no model
PURE = (
    "jaccard",
    "chance_jaccard",
    "dead_share_of",
    "base_sparsity",
    "map_concentration",
    "area_under_curve",
    "remove_pixels",
    "removal_count",
    "removal_masks",
    "tie_share",
    "quantize_maps",
    "fill_pixels",
    "noisy_linear_imputation",
    "removal_order",
    "degrade",
    "mask_only",
    "roar_auc",
)
# the amount each removal function takes, by name
AMOUNTS = {
    "extract_pathway": "sparsity",
    "extract_pathways": "sparsities",
    "pathway_grad_method": "sparsity",
    "pixel_removal_curve": "percents",
    "remove_pixels": "percent",
    "removal_count": "percent",
    "removal_masks": "percent",
    "tie_share": "percent",
    "degrade": "percent",
    "mask_only": "percent",
    "retrain": "percent",
    "area_under_curve": "percents",
    "roar_auc": "percents",
}


def _public_functions() -> dict[str, Callable[..., Any]]:
    """Every function of ``pathlib_pw.__all__`` and the public functions of the convention's modules."""
    found: dict[str, Callable[..., Any]] = {}
    for name in pathlib_pw.__all__:
        value = getattr(pathlib_pw, name)
        if inspect.isfunction(value):
            found[name] = value
    for module in MODULES:
        names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
        for name in names:
            value = getattr(module, name)
            if inspect.isfunction(value) and value.__module__.startswith("pathlib_pw") and not name.startswith("_"):
                found.setdefault(name, value)
    return found


FUNCTIONS = _public_functions()


def _params(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


def test_the_inspected_set_is_the_api():
    for name in ("extract_pathway", "attribute", "saliency", "pathway_grad", "dead_share", "pixel_removal_curve", "remove_pixels"):
        assert name in FUNCTIONS
    assert set(FUNCTIONS) >= set(AMOUNTS) - {"retrain"} | set(PURE) - {"retrain"}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_model_x_first_and_target_keyword_only(name):
    params = _params(FUNCTIONS[name])
    names = list(params)
    if names[:2] != ["model", "x"] or "target" not in params or name in ATTRIBUTION_PROTOCOL or name in PENDING_TARGET:
        return
    assert params["target"].kind is inspect.Parameter.KEYWORD_ONLY, f"{name}: target must be keyword-only"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_names(name):
    params = _params(FUNCTIONS[name])
    assert "pathway" not in params, f"{name}: a Pathway argument is named path"
    assert not {"fraction", "fractions", "fractions_percent"} & set(params), f"{name}: amounts removed are in percent"
    if "method" in params:
        assert name in METHOD_IS_ATTRIBUTION or name in PENDING_METHOD, f"{name}: method is only an attribution method"
    if name in CRITERION_FUNCTIONS:
        assert "criterion" in params and "method" not in params


def test_allow_lists_are_current():
    for name in {**METHOD_IS_ATTRIBUTION, **PENDING_METHOD}:
        assert "method" in _params(FUNCTIONS[name]), name
    for name in ATTRIBUTION_PROTOCOL:
        assert list(_params(FUNCTIONS[name]))[:3] == ["model", "x", "target"], name


@pytest.mark.parametrize("name", PURE)
def test_pure_measures_take_no_model(name):
    fn = FUNCTIONS[name]
    assert "model" not in _params(fn)


@pytest.mark.parametrize("name", sorted(AMOUNTS))
def test_amount_names(name):
    fn = FUNCTIONS.get(name) or getattr(roar, name)
    assert AMOUNTS[name] in _params(fn)


def test_functions_that_run_the_model_take_their_subject_third():
    subjects = {
        "extract_pathway": "criterion",
        "extract_pathways": "criterion",
        "pathway_grad": "path",
        "path_response": "path",
        "output_change": "path",
        "dead_share": "path",
        "attribute": "method",
        "saliency": "method",
        "pixel_removal_curve": "maps",
    }
    for name, subject in subjects.items():
        assert list(_params(FUNCTIONS[name]))[:3] == ["model", "x", subject], name


# ---------------------------------------------------------------- old spellings: FutureWarning, same result


@pytest.fixture
def model():
    return nets.tiny_cnn(seed=1, double=True)


@pytest.fixture
def x():
    return nets.images(2, seed=2, double=True)


def _old(call: Callable[[], Any], match: str) -> Any:
    with pytest.warns(FutureWarning, match=match):
        return call()


def _new(call: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        return call()


def _same(a: Any, b: Any) -> None:
    if isinstance(a, Pathway):
        assert a == b
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


def test_extract_pathway_old_spellings(model, x):
    new = _new(lambda: pathlib_pw.extract_pathway(model, x, "neuron_mct", 50.0, target=[1, 2], variant="intended"))
    _same(_old(lambda: pathlib_pw.extract_pathway(model, x, method="neuron_mct", sparsity=50.0, target=[1, 2]), "criterion="), new)
    _same(_old(lambda: pathlib_pw.extract_pathway(model, x, "neuron_mct", 50.0, [1, 2], "intended"), "target=.*variant="), new)
    many = _new(lambda: pathlib_pw.extract_pathways(model, x, "neuron_mct", [50.0], target=[1, 2]))
    _same(_old(lambda: pathlib_pw.extract_pathways(model, x, "neuron_mct", [50.0], [1, 2]), "target=")[0], many[0])
    _same(_old(lambda: pathlib_pw.extract_pathways(model, x, method="neuron_mct", sparsities=[50.0], target=[1, 2]), "criterion=")[0], many[0])


def test_attribute_old_order_and_positional_target(model, x):
    new = _new(lambda: pathlib_pw.attribute(model, x, "gradients", target=[0, 3]))
    _same(_old(lambda: pathlib_pw.attribute("gradients", model, x, [0, 3]), r"attribute\(model, x, method\)"), new)
    _same(_old(lambda: pathlib_pw.attribute(model, x, "gradients", [0, 3]), "target="), new)
    plain = _new(lambda: pathlib_pw.attribute(model, x, attribution_methods.sobel))
    _same(_old(lambda: pathlib_pw.attribute(attribution_methods.sobel, model, x), r"attribute\(model, x, method\)"), plain)
    _same(_old(lambda: pathlib_pw.attribute("gradients", model, x=x, target=[0, 3]), r"attribute\(model, x, method\)"), new)


def test_saliency_and_pathway_grad_positional_target(model, x):
    new = _new(lambda: pathlib_pw.saliency(model, x, "input_mct", target=[1, 1]))
    _same(_old(lambda: pathlib_pw.saliency(model, x, "input_mct", [1, 1]), "target="), new)
    path = pathlib_pw.extract_pathway(model, x, "neuron_mct", 40.0, target=[1, 1])
    grad = _new(lambda: pathlib_pw.pathway_grad(model, x, path, target=[2, 0], times_input=True))
    _same(_old(lambda: pathlib_pw.pathway_grad(model, x, path, [2, 0], True), "target=.*times_input="), grad)
    _same(_old(lambda: pathlib_pw.pathway_grad(model, x, pathway=path, target=[2, 0], times_input=True), "path="), grad)
    tgt = torch.tensor([1, 2])
    gb = _new(lambda: saliency.guided_backprop(model, x, target=tgt))
    _same(_old(lambda: saliency.guided_backprop(model, x, tgt), "target="), gb)


def test_output_change_and_path_response_positional_target(model, x):
    path = pathlib_pw.extract_pathway(model, x, "neuron_mct", 60.0)
    new = _new(lambda: pathlib_pw.output_change(model, x, path, target=[3, 4]))
    _same(_old(lambda: pathlib_pw.output_change(model, x, path, [3, 4]), "target="), new)
    response = _new(lambda: metrics.path_response(model, x, path, target=[3, 4]))
    old = _old(lambda: metrics.path_response(model, x, path, [3, 4]), "target=")
    _same(old.p_path, response.p_path)
    _same(old.p_orig, response.p_orig)


def test_dead_share_old_form_and_pure_helper(model, x):
    path = pathlib_pw.extract_pathway(model, x, "random", 50.0)
    _, acts, _ = record_activations(model, x)
    new = _new(lambda: pathlib_pw.dead_share(model, x, path))
    _same(_new(lambda: metrics.dead_share_of(path, acts)), new)
    _same(_old(lambda: pathlib_pw.dead_share(path, acts), r"dead_share\(model, x, path\)"), new)
    per_site = _new(lambda: pathlib_pw.dead_share(model, x, path, per_site=True))
    assert per_site.shape == (2, 3)
    _same(_old(lambda: pathlib_pw.dead_share(path, acts, per_site=True), "dead_share"), per_site)
    _same(_old(lambda: pathlib_pw.dead_share(path, acts, True), "dead_share"), per_site)


def test_dead_share_against_a_literal_count(model, x):
    """dead_share runs the model: the share of kept neurons with activation <= 0, counted by hand."""
    path = pathlib_pw.extract_pathway(model, x, "random", 30.0)
    _, acts, _ = record_activations(model, x)
    for b in range(2):
        dead = kept = 0
        for mask, act in zip(path.masks, acts):
            for keep, value in zip(mask[b].flatten().tolist(), act[b].flatten().tolist()):
                kept += keep
                dead += keep and value <= 0
        assert float(pathlib_pw.dead_share(model, x, path)[b]) == pytest.approx(dead / kept, abs=1e-6)


def test_removal_fraction_keywords_convert_to_percent(x):
    maps = torch.rand((2, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    new = _new(lambda: removal.remove_pixels(x, maps, 25, order="least", fill=1.0))
    _same(_old(lambda: removal.remove_pixels(x, maps, fraction=0.25, order="least", fill=1.0), r"percent=.*x 100"), new)
    _same(_old(lambda: removal.remove_pixels(x, maps, 25, "least", 1.0), "order=.*fill="), new)
    assert _old(lambda: removal.removal_count(fraction=0.25, pixels=64), "percent=") == _new(lambda: removal.removal_count(25, 64)) == 16
    masks = _new(lambda: removal.removal_masks(maps, 25, order="least"))
    _same(_old(lambda: removal.removal_masks(maps, fraction=0.25, order="least"), "percent="), masks)
    _same(_old(lambda: removal.removal_masks(maps, 25, "least"), "order="), masks)
    share = _new(lambda: removal.tie_share(maps, 25, order="least"))
    _same(_old(lambda: removal.tie_share(maps, fraction=0.25, order="least"), "percent="), share)
    _same(_old(lambda: removal.tie_share(maps, 25, "least"), "order="), share)
    values = torch.tensor([0.1, 0.3, 0.2], dtype=torch.float64)
    area = _new(lambda: removal.area_under_curve([1, 5, 10], values))
    _same(_old(lambda: removal.area_under_curve(fractions_percent=[1, 5, 10], values=values), "percents="), area)


def test_pixel_removal_curve_old_spellings(model, x):
    maps = torch.rand((2, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    new = _new(lambda: removal.pixel_removal_curve(model, x, maps, [25, 50], order="most", target=[1, 2], ties="first"))
    old = _old(
        lambda: removal.pixel_removal_curve(model, x, maps, fractions=[0.25, 0.5], order="most", target=[1, 2], ties="first"),
        "percents=",
    )
    _same(old, new)
    _same(_old(lambda: removal.pixel_removal_curve(model, x, maps, [25, 50], "most", None, [1, 2], ties="first"), "order="), new)


def test_both_spellings_at_once_is_an_error(model, x):
    with pytest.raises(TypeError, match="criterion"):
        pathlib_pw.extract_pathway(model, x, criterion="neuron_mct", method="neuron_mct", sparsity=50.0)
    maps = torch.zeros(2, 8, 8)
    with pytest.raises(TypeError, match="percent"):
        removal.remove_pixels(x, maps, percent=10, fraction=0.1)


def test_share_looking_amounts_warn(x):
    maps = torch.rand((2, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # a pixel amount was a share before: an old positional call now means 100x less, and says so
    with pytest.warns(FutureWarning, match=r"did you mean 50 %\? .*percent was a share in \[0, 1\] in earlier versions"):
        removal.remove_pixels(x, maps, 0.5)
    with pytest.warns(FutureWarning, match=r"percent=0.5 is 0.5 %; did you mean 50 %"):
        removal.removal_masks(maps[:1], 0.5)
    with pytest.warns(UserWarning, match="did you mean"):
        removal.area_under_curve([0.01, 0.05, 0.1], torch.tensor([0.1, 0.2, 0.3]))
    with pytest.warns(UserWarning, match="did you mean 50 %"):
        roar.degrade(x, maps, 0.5, "roar")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        removal.area_under_curve([0.5, 1, 5], torch.tensor([0.1, 0.2, 0.3]))  # not every x below 1: percent


def test_pathway_method_field_renamed():
    masks = [torch.ones(1, 2, dtype=torch.bool)]
    new = _new(lambda: Pathway(masks, ["a"], torch.zeros(1), criterion="mct"))
    _same(_old(lambda: Pathway(masks, ["a"], torch.zeros(1), method="mct"), "criterion="), new)
    assert _old(lambda: new.method, "criterion") == "mct"
    _same(_old(lambda: Pathway.from_masks(masks, ["a"], method="mct"), "criterion="), Pathway.from_masks(masks, ["a"], "mct"))


def test_warnings_point_at_the_callers_line_even_beside_the_package(tmp_path):
    """outside_stacklevel stops at the first frame outside the package directory: a user's script named
    like the package (pathlib_pw_demo.py next to it) is outside."""
    import subprocess
    import sys

    import pathlib_pw

    root = __import__("pathlib").Path(pathlib_pw.__file__).resolve().parent.parent
    script = root / "pathlib_pw_demo_warning_check.py"
    script.write_text(
        "import warnings\nfrom pathlib_pw.units import warn_if_share\nwarnings.simplefilter('always')\n"
        "warn_if_share('sparsity', 0.9)  # the user's line\n"
    )
    try:
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=root, check=True)
    finally:
        script.unlink()
    assert "pathlib_pw_demo_warning_check.py:4: UserWarning: sparsity=0.9 is 0.9 %; did you mean 90 %?" in out.stderr
