"""extract_pathways never returns a silently wrong pathway (issue 27): DGR's tied gates, realized
sparsity above the request, disconnected paths, skipped activations, units, model outputs and dtypes.

These tests run with the checks on (the other criteria tests compare masks with references and run
them off, as the experiments do: see tests/conftest.py)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pathlib_pw as pw
from pathlib_pw.criteria.checks import EmptyPathwayError, PathwayWarning, keeps_nothing, recorded_by_experiment
from pathlib_pw.models import select_output
from pathlib_pw.thresholds import threshold_pathway, tie_broken_pathway
from tests import nets

pytestmark = pytest.mark.pathway_checks


def _relu_gelu_cnn(seed: int = 0) -> nn.Module:
    """The issue's model: a small CNN mixing ReLU and GELU."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # torch's default init, as the user had
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.GELU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
        )  # fmt: skip
    return model.eval()


def _images(batch: int = 4) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_dgr_tied_gates_no_longer_empty_the_path():
    """The issue's case: with 20 iterations the gates of every neuron that does not reach the logit
    stay tied; the paper's <= rule removed them all (100 % realized, an all-zero PathwayGrad map).
    The default now removes exactly the requested count, tied gates in a seeded random order."""
    model, x = _relu_gelu_cnn(), _images()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PathwayWarning)  # the GELU is listed; tested below
        path = pw.extract_pathway(model, x, "dgr", 50, iterations=20)
    n = path.num_neurons
    assert torch.all((path.sparsity - 50).abs() <= 100 / n + 1e-4), path.sparsity
    maps = pw.pathway_grad(model, x, path)
    assert bool((maps.flatten(1).abs().amax(1) > 0).all()), "PathwayGrad through the path must not be all zero"
    # the old rule, still available, empties the path: it raises, or warns with the numbers when allowed
    with pytest.raises(EmptyPathwayError, match=r"keeps no neuron at all.*allow_empty=True"):
        pw.extract_pathway(model, x, "dgr", 50, iterations=20, ties="all")
    with pytest.warns(PathwayWarning, match=r"dgr removed more neurons than requested \(tolerance 1 point\): 100\.00 % realized for 50\.00 % requested on images 0, 1, 2, 3 of 4"):
        old = pw.extract_pathway(model, x, "dgr", 50, iterations=20, ties="all", allow_empty=True)
    assert torch.equal(old.sparsity, torch.full((4,), 100.0))


def test_dgr_random_ties_depend_on_the_seed_and_keep_the_count():
    model, x = _relu_gelu_cnn(), _images(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PathwayWarning)
        a = pw.extract_pathway(model, x, "dgr", 50, iterations=20, seed=[3, 4])
        b = pw.extract_pathway(model, x, "dgr", 50, iterations=20, seed=[3, 4])
        c = pw.extract_pathway(model, x, "dgr", 50, iterations=20, seed=[5, 6])
    assert torch.equal(a.flat(), b.flat())
    assert not torch.equal(a.flat(), c.flat()), "the tied block is ordered by the seed, not by position"
    assert torch.equal(a.flat().sum(1), c.flat().sum(1)), "every seed removes the same count"
    # position neutral: the removed tied neurons are spread over the sites, not the first ones
    assert all(bool((~m).any()) and bool(m.any()) for m in a.masks)


def test_tie_broken_rule_equals_the_paper_rule_without_ties():
    scores = [torch.rand(3, 4, 5, 5, generator=torch.Generator().manual_seed(s)) for s in range(2)]
    keys = torch.stack([torch.randperm(200) for _ in range(3)])
    for p in (0.0, 13.0, 50.0, 99.0):
        level = torch.full((3,), p, dtype=torch.float64)
        assert torch.equal(
            tie_broken_pathway(scores, level, ["a", "b"], "x", keys).flat(), threshold_pathway(scores, level, ["a", "b"], "x").flat()
        )


def test_overshoot_warns_with_the_numbers_and_only_beyond_the_tolerance():
    """NeuronMCT scores every dead neuron 0 and the paper's rule removes them all: asking for 5 %
    on a net whose dead share is higher realizes that share, and says so."""
    model, x = nets.tiny_cnn(), nets.images(2)
    dead = float(pw.metrics.base_sparsity(pw.record_activations(model, x)[1]).min())
    assert dead > 0.2
    with pytest.warns(PathwayWarning, match=r"neuron_mct removed more neurons than requested \(tolerance 1 point\): .* % realized for 5\.00 % requested on images 0, 1 of 2.*dead neurons all score exactly 0"):
        pw.extract_pathway(model, x, "neuron_mct", 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PathwayWarning)
        path = pw.extract_pathway(model, x, "random", 5, seed=0)  # per-site exact counts: never over
        assert bool((path.sparsity <= 5 + 1 + 100 / path.num_neurons).all())


def test_disconnected_path_warns_naming_the_sites_and_keeps_the_other_levels():
    model, x = nets.tiny_cnn(), nets.images(2)
    with pytest.warns(PathwayWarning, match=r"disconnects the output from the input at .* realized sparsity on images 0, 1 of 2 \(sites that keep no neuron: relu2, relu3\)"):
        low, high = pw.extract_pathways(model, x, "dead_first_activation", [60, 99])
    assert high.info["disconnected"].tolist() == [True, True] and low.info["disconnected"].tolist() == [False, False]
    assert float(pw.pathway_grad(model, x, high).abs().max()) == 0.0, "the warning's claim: an all-zero map"
    assert float(pw.pathway_grad(model, x, low).abs().max()) > 0.0


def test_a_path_that_keeps_nothing_raises_unless_allowed():
    model, x = _relu_gelu_cnn(), _images()
    with pytest.raises(EmptyPathwayError, match=r"the dgr pathway keeps no neuron at all on images 0, 1, 2, 3 of 4.*allow_empty=True"):
        pw.extract_pathway(model, x, "dgr", 50, iterations=20, ties="all")
    with pytest.raises(TypeError, match="allow_empty must be a bool"):
        pw.extract_pathway(model, x, "neuron_mct", 50, allow_empty="yes")


def test_keeps_nothing_finds_an_image_empty_at_every_site_and_no_other():

    # the scan stops once every image keeps a neuron: an image empty at the first sites but keeping
    # one at the last is not empty, one empty everywhere is, whatever order the sites come in
    def masks(batch: int, empty: set[int], late: set[int], early: set[int] = set()) -> list[torch.Tensor]:
        out = [torch.ones(batch, 3, 4, dtype=torch.bool), torch.ones(batch, 6, dtype=torch.bool), torch.ones(batch, 2, 2, dtype=torch.bool)]
        for b in empty | late | early:
            for m in out:
                m[b] = False
        for b in late:
            out[-1][b, 1, 1] = True
        for b in early:
            out[0][b, 2, 3] = True
        return out

    assert keeps_nothing(masks(4, set(), set())).tolist() == [False] * 4
    assert keeps_nothing(masks(4, {2}, {0})).tolist() == [False, False, True, False]
    assert keeps_nothing(masks(3, {0, 1, 2}, set())).tolist() == [True] * 3
    assert keeps_nothing(masks(2, set(), {0, 1})).tolist() == [False, False]
    assert keeps_nothing(masks(2, {1}, set())[::-1]).tolist() == [False, True]
    assert keeps_nothing(masks(3, {2}, {1}, {0})).tolist() == [False, False, True]


def test_one_warning_per_kind_for_several_levels():
    model, x = nets.tiny_cnn(), nets.images(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pw.extract_pathways(model, x, "neuron_mct", [1, 5, 10])
    over = [w for w in caught if "removed more neurons than requested" in str(w.message)]
    assert len(over) == 1 and str(over[0].message).count("% requested on") == 3


def test_a_cut_inside_a_block_of_tied_gates_says_the_seed_chose():
    """DGR's tie order is position-neutral, but it still picks which tied gates go: the share is
    recorded and, above 1 % of the neurons, said."""
    model, x = _relu_gelu_cnn(), _images(2)
    with pytest.warns(PathwayWarning, match=r"dgr: .* % of the neurons tie at the cut \(image \d\) and the seeded tie order chose the .* % removed from them"):
        path = pw.extract_pathway(model, x, "dgr", 50, iterations=20)
    tied, removed = path.info["tied_share"], path.info["tie_removed_share"]
    assert bool(((removed > 0) & (removed < tied)).all())
    mct = pw.extract_pathway(nets.tiny_cnn(), nets.images(1), "neuron_mct", 60)
    assert "tied_share" not in mct.info  # the paper's rule removes tied blocks whole: nothing to choose


def test_experiments_record_instead_of_warning_or_raising():
    model, x = nets.tiny_cnn(), nets.images(2)
    with warnings.catch_warnings(), recorded_by_experiment():
        warnings.simplefilter("error")
        path = pw.extract_pathway(model, x, "dead_first_activation", 99)
    assert float(path.sparsity.min()) > 98


class _FunctionalMix(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.SiLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.gelu(self.conv2(self.act(x)))
        return self.fc(torch.sigmoid(x).mean((2, 3)))


def test_skipped_activations_warn_once_and_are_listed_in_info():
    model = _FunctionalMix().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(PathwayWarning, match=r"3 activation\(s\) of this model are not rectifiers.*act \(SiLU\), /gelu, /sigmoid"):
        path = pw.extract_pathway(model, x, "neuron_mct", 60)
    assert path.info["skipped_activations"] == ["act (SiLU)", "/gelu", "/sigmoid"]
    assert path.sites == ["/relu"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = pw.extract_pathway(model, x, "neuron_mct", 60)
        plain = pw.extract_pathway(nets.tiny_cnn(), nets.images(1), "neuron_mct", 50)  # only rectifiers: silent
    assert not [w for w in caught if "not rectifiers" in str(w.message)], "once per model"
    assert again.info["skipped_activations"] == path.info["skipped_activations"]
    assert plain.info["skipped_activations"] == []


@pytest.mark.parametrize("value, meant", [(0.9, "90"), (0.5, "50")])
def test_a_sparsity_below_one_asks_whether_percent_was_meant(value, meant):
    model, x = nets.tiny_cnn(), nets.images(1)
    with pytest.warns(UserWarning, match=rf"sparsity={value} is {value} %; did you mean {meant} %\? \(amounts removed are in percent"):
        pw.extract_pathway(model, x, "random", value)
    with pytest.warns(UserWarning, match=r"sparsities=\[0.1, 0.5\] are percent; did you mean \[10, 50\] %"):
        pw.extract_pathways(model, x, "random", [0.1, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pw.extract_pathways(model, x, "random", [0, 0.5, 50])  # 50 makes the list percent


class _Tuple(nn.Module):
    def __init__(self, inner: nn.Module, kind: str) -> None:
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x: torch.Tensor):
        out = self.inner(x)
        if self.kind == "tuple":
            return out, out.detach() * 0
        if self.kind == "dict":
            return {"out": out, "aux": out}
        return out[:, :, None, None].expand(-1, -1, 2, 2)


@pytest.mark.parametrize(
    "kind, error, message",
    [
        ("tuple", TypeError, r"got a tuple \(Tensor\(1, 5\), Tensor\(1, 5\)\): wrap the model .*select_output\(model, 0\)"),
        ("dict", TypeError, r"got a dict with keys \['aux', 'out'\]: wrap the model"),
        ("map", ValueError, r"got a tensor of shape \(1, 5, 2, 2\): wrap the model"),
    ],
)
def test_outputs_that_are_not_logits_say_how_to_wrap_the_model(kind, error, message):
    model, x = _Tuple(nets.tiny_cnn(), kind), nets.images(1)
    with pytest.raises(error, match=message):
        pw.extract_pathway(model, x, "neuron_mct", 50)
    if kind != "map":
        wrapped = select_output(model, 0 if kind == "tuple" else "out")
        got = pw.extract_pathway(wrapped, x, "neuron_mct", 50)
        want = pw.extract_pathway(nets.tiny_cnn(), x, "neuron_mct", 50)
        assert torch.equal(got.flat(), want.flat()) and got.sites == [f"model.inner.{s}" for s in want.sites]
    with pytest.raises(TypeError, match="key must be an int, a str or a callable"):
        select_output(model, 1.5)


def test_input_takes_the_model_dtype():
    model = nets.tiny_cnn(double=True)
    x64 = nets.images(2, double=True)
    got = pw.extract_pathway(model, x64.float(), "neuron_mct", 50)
    want = pw.extract_pathway(model, x64.float().double(), "neuron_mct", 50)
    assert torch.equal(got.flat(), want.flat())


def test_every_model_running_function_names_the_wrapping_for_a_tuple_output():
    model, x = _Tuple(nets.tiny_cnn(), "tuple"), nets.images(1)
    maps = torch.rand(1, 8, 8)
    path = pw.extract_pathway(nets.tiny_cnn(), x, "neuron_mct", 50)
    calls = {
        "pathway_grad": lambda: pw.pathway_grad(model, x, path),
        "saliency": lambda: pw.saliency(model, x, "gradients"),
        "attribute": lambda: pw.attribute(model, x, "gradients"),
        "output_change": lambda: pw.output_change(model, x, path),
        "pixel_removal_curve": lambda: pw.pixel_removal_curve(model, x, maps, [10]),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match=r"must return logits of shape \(B, classes\), got a tuple.*select_output") as raised:
            call()
        assert "Traceback" not in str(raised.value), name


def _copy(path: pw.Pathway) -> pw.Pathway:
    """A new pathway with copies of the masks: nothing is remembered for it."""
    return pw.Pathway.from_masks([m.clone() for m in path.masks], path.sites, path.criterion, **path.info)


def _fresh_map(model: nn.Module, x: torch.Tensor, path: pw.Pathway, target: object = None) -> torch.Tensor:
    return pw.pathway_grad(model, x, _copy(path), target=target)


def _forward_count(model: nn.Module) -> list[int]:
    """Counts the model's forward passes from now on (by its forward, not a hook: a hook is a change)."""
    calls, forward = [0], model.forward

    def counted(*args: object) -> torch.Tensor:
        calls[0] += 1
        return forward(*args)

    model.forward = counted  # type: ignore[method-assign]
    return calls


def test_pathway_grad_reuses_the_connectivity_checks_gradient_without_a_pass():
    model, x = nets.tiny_cnn(), nets.images(3)
    path = pw.extract_pathway(model, x, "neuron_mct", 70)
    calls = _forward_count(model)
    reused = pw.pathway_grad(model, x, path)
    assert calls[0] == 0, "the map came from the gradient the check computed, with no forward pass"
    assert torch.equal(reused, _fresh_map(model, x, path)) and calls[0] == 1
    assert torch.equal(pw.pathway_grad(model, x.clone(), path, times_input=True), pw.pathway_grad(model, x, _copy(path), times_input=True))


@pytest.mark.parametrize("change", ["mask", "weight", "buffer", "input", "target", "hook", "next_call"])
def test_a_remembered_gradient_is_never_used_after_what_it_depends_on_changed(change):
    model, x = nets.tiny_cnn(), nets.images(3)
    path = pw.extract_pathway(model, x, "neuron_mct", 70)
    target = None
    if change == "mask":
        path.masks[-1][:, : path.masks[-1].shape[1] // 2] = False
    elif change == "weight":
        with torch.no_grad():
            next(model.parameters()).mul_(-2.0)
    elif change == "buffer":
        model.register_buffer("extra", torch.zeros(1))  # a new buffer changes the state too
        with torch.no_grad():
            model.extra.add_(1.0)
    elif change == "input":
        x = x.flip(-1)
    elif change == "target":
        target = (path.info["target"] + 1) % 5
    elif change == "hook":
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        first.register_forward_hook(lambda _m, _a, out: out * 3.0)
    elif change == "next_call":
        pw.extract_pathway(model, x, "neuron_mct", 50)  # forgets the first call's gradients
    calls = _forward_count(model)
    got = pw.pathway_grad(model, x, path, target=target)
    assert calls[0] >= 1, "recomputed"
    assert torch.equal(got, _fresh_map(model, x, path, target))
