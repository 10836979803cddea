"""pathlib_pw.extract_pathway: batching, chunking, targets, per-image sparsity, no side effects on the
model (weights, requires_grad, .grad, modes, hooks) also when the forward raises, and argument errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.modules import module as nn_module

import pathlib_pw as pw
from tests import nets
from tests import reference_impl as R
from tests.nets import single_thread  # noqa: F401  (autouse fixture)

# (method, variant, sparsity, options), all cheap on the tiny nets
CASES = {
    "mct": ("neuron_mct", "intended", 60, {}),
    "intgrad": ("neuron_intgrad", "intended", 60, {"steps": 3}),
    "intgrad_full": ("neuron_intgrad", "intended", 60, {"steps": 3, "recompute": "full", "alpha_chunk": 2}),
    "intgrad_original": ("neuron_intgrad", "original_code", 60, {"steps": 3}),
    "greedy": ("greedy", "intended", 30, {"step": 10}),
    "greedy_original": ("greedy", "original_code", 30, {"rounds": 4}),
    "random": ("random", "intended", 50, {"seed": 3}),
    "dgr": ("dgr", "intended", 50, {"iterations": 8, "lr": 0.05}),
    "dgr_r": ("dgr", "intended", 50, {"iterations": 8, "lr": 0.05, "init": "r", "seed": 9}),
    "active": ("active_subnet", "intended", None, {}),
    "dead_random": ("dead_first_random", "intended", 60, {"seed": 3}),
    "dead_activation": ("dead_first_activation", "intended", 60, {}),
}
SEEDED = {"random", "dgr", "dgr_r", "greedy", "dead_random"}  # greedy, dgr: their random tie order


def _run(model, x, case, **over):
    method, variant, p, options = CASES[case]
    options = {**options, **over}
    sparsity = options.pop("sparsity", p)
    return pw.extract_pathway(model, x, method, sparsity, variant=variant, **options)


def _same(a, b, what=""):
    assert a.sites == b.sites, what
    assert len(a.masks) == len(b.masks)
    for s, (ma, mb) in enumerate(zip(a.masks, b.masks)):
        assert ma.shape == mb.shape and torch.equal(ma, mb), f"{what}: site {s} differs"
    assert torch.allclose(a.sparsity, b.sparsity), what
    for key in ("target", "requested_sparsity"):
        assert torch.equal(torch.as_tensor(a.info[key]), torch.as_tensor(b.info[key])), f"{what}: info[{key}]"


# ------------------------------------------------------------------------------- batching


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_equals_per_image(case):
    model = nets.tiny_resnet()
    x = nets.images(3)
    over = {"seed": [21, 22, 23]} if case in SEEDED else {}
    batched = _run(model, x, case, **over)
    assert batched.batch_size == 3 and batched.sparsity.shape == (3,)
    assert batched.sites == R.site_names(model, x[:1])
    for b in range(3):
        over_b = {"seed": [over["seed"][b]]} if over else {}
        single = _run(model, x[b : b + 1], case, **over_b)
        _same(batched[b], single, f"{case} image {b}")


@pytest.mark.parametrize("case", sorted(CASES))
def test_batch_size_chunking_equals_one_call(case):
    model = nets.tiny_cnn()
    x = nets.images(5)
    one = _run(model, x, case)
    for bs in (1, 2, 5, 8):
        _same(one, _run(model, x, case, batch_size=bs), f"{case} batch_size={bs}")


@pytest.mark.parametrize("case", ["mct", "intgrad", "greedy", "greedy_original", "dgr", "active"])
def test_target_default_is_prediction(case):
    model = nets.tiny_cnn(seed=3)
    x = nets.images(3, seed=5, scale=3.0)
    pred = model(x).argmax(1)
    default = _run(model, x, case)
    assert default.info["target"].tolist() == pred.tolist()
    _same(default, _run(model, x, case, target=pred.tolist()), f"{case} explicit prediction")
    _same(default, _run(model, x, case, target=pred), f"{case} tensor prediction")
    other = [(int(t) + 1) % 5 for t in pred]
    explicit = _run(model, x, case, target=other)
    assert explicit.info["target"].tolist() == other
    if case != "dgr":  # DGR distils the whole softmax; its target is informational
        assert not torch.equal(explicit.flat(), default.flat()), f"{case}: the target must change the path"


def test_scalar_target_applies_to_every_image():
    model = nets.tiny_cnn()
    x = nets.images(3)
    a = pw.extract_pathway(model, x, "neuron_mct", 50, target=2)
    b = pw.extract_pathway(model, x, "neuron_mct", 50, target=[2, 2, 2])
    assert a.info["target"].tolist() == [2, 2, 2]
    assert torch.equal(a.flat(), b.flat())


@pytest.mark.parametrize("case", ["mct", "intgrad", "greedy", "greedy_original", "random", "dgr", "dead_random", "dead_activation"])
def test_per_image_sparsity(case):
    model = nets.tiny_resnet()
    x = nets.images(3)
    ps = [20.0, 50.0, 80.0]
    over = {"seed": [1, 2, 3]} if case in SEEDED else {}
    for sparsity in (ps, torch.tensor(ps), tuple(ps)):
        path = _run(model, x, case, sparsity=sparsity, **over)
        assert path.info["requested_sparsity"].tolist() == pytest.approx(ps)
        for b, p in enumerate(ps):
            over_b = {"seed": [over["seed"][b]]} if over else {}
            single = _run(model, x[b : b + 1], case, sparsity=p, **over_b)
            _same(path[b], single, f"{case} image {b} p={p}")


def test_pathway_shapes_and_types():
    model = nets.tiny_resnet()
    path = pw.extract_pathway(model, nets.images(2), "neuron_mct", 40)
    assert [tuple(m.shape) for m in path.masks] == [(2, 4, 8, 8)] * 5 + [(2, 8)]
    assert all(m.dtype == torch.bool for m in path.masks)
    assert path.sparsity.shape == (2,) and path.sparsity.is_floating_point()
    assert path.info["target"].shape == (2,)


# -------------------------------------------------------------------------- no side effects


def _global_hooks():
    names = [n for n in dir(nn_module) if n.startswith("_global_") and n.endswith("hooks")]
    return {n: len(getattr(nn_module, n)) for n in names}


def _hook_free(model: nn.Module) -> bool:
    attrs = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
             "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_state_dict_hooks",
             "_load_state_dict_pre_hooks")
    for m in model.modules():
        for a in attrs:
            if len(getattr(m, a, {})) != 0:
                return False
    return True


class State:
    """Everything about a model that a criterion must leave as it found it."""

    def __init__(self, model: nn.Module) -> None:
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.requires_grad = [p.requires_grad for p in model.parameters()]
        self.grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
        self.modes = [m.training for m in model.modules()]
        self.global_hooks = _global_hooks()

    def check(self, model: nn.Module, what: str) -> None:
        now = model.state_dict()
        assert now.keys() == self.state.keys(), what
        for k, v in self.state.items():
            assert torch.equal(now[k], v), f"{what}: {k} changed"
        assert [p.requires_grad for p in model.parameters()] == self.requires_grad, f"{what}: requires_grad"
        for i, (p, g) in enumerate(zip(model.parameters(), self.grads)):
            if g is None:
                assert p.grad is None, f"{what}: parameter {i} got a .grad"
            else:
                assert p.grad is not None and torch.equal(p.grad, g), f"{what}: parameter {i} .grad changed"
        assert [m.training for m in model.modules()] == self.modes, f"{what}: training/eval modes"
        assert _hook_free(model), f"{what}: hooks left on the model"
        assert _global_hooks() == self.global_hooks, f"{what}: global hooks left"


def _prepare(model: nn.Module) -> nn.Module:
    """Mixed training modes, one frozen parameter, some existing .grad fields."""
    for i, m in enumerate(model.modules()):
        m.training = bool(i % 2 == 0)
    params = list(model.parameters())
    params[0].requires_grad_(False)
    for i, p in enumerate(params[1:]):
        if i % 2 == 0:
            p.grad = torch.full_like(p, 0.25)
    return model


@pytest.mark.parametrize("case", sorted(CASES))
def test_model_and_input_unchanged(case):
    model = _prepare(nets.tiny_resnet())
    x = nets.images(2)
    x0 = x.clone()
    before = State(model)
    _run(model, x, case)
    before.check(model, case)
    assert torch.equal(x, x0) and not x.requires_grad and x.grad is None
    # and the model computes what it computed before (in its own modes)
    _run(model, x, case, batch_size=1)
    before.check(model, f"{case} chunked")


def test_model_with_all_parameters_frozen():
    model = nets.tiny_cnn()
    for p in model.parameters():
        p.requires_grad_(False)
    x = nets.images(2)
    for case in ("mct", "intgrad", "greedy", "dgr"):
        path = _run(model, x, case)
        assert all(not p.requires_grad and p.grad is None for p in model.parameters())
        assert path.batch_size == 2
    ref, _ = R.mct_masks(model, x[:1], 60)
    R.assert_masks_equal(R.batch_masks(_run(model, x, "mct"), 0), ref, "frozen mct")


class Boom(nn.Module):
    """Raises from inside the forward pass (between two hooked rectifiers) from call ``after`` on."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls >= self.after:
            raise RuntimeError("boom inside forward")
        return x


class ExplodingNet(nn.Module):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU(inplace=True)
        self.boom = Boom(after)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.fc = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.boom(self.relu1(self.bn(self.conv1(x))))
        x = self.relu2(self.conv2(x))
        return self.fc(torch.flatten(x, 1))


@pytest.mark.parametrize("after", [1, 2, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_exception_inside_forward_leaves_no_trace(case, after):
    torch.manual_seed(0)
    model = _prepare(ExplodingNet(after).double())
    x = nets.images(2)
    before = State(model)
    try:
        _run(model, x, case)
    except RuntimeError as error:
        # the model's own error comes through (possibly chained), not something else
        chain, e = [], error
        while e is not None:
            chain.append(str(e))
            e = e.__cause__ or e.__context__
        assert any("boom" in c for c in chain) or "fx" in str(error) or "recompute" in str(error), chain
    else:
        # only criteria that call the model fewer than `after` times may finish
        assert after > 1, f"{case}: the forward raised but extract_pathway returned"
    before.check(model, f"{case} after={after}")


def test_exception_in_every_criterion_with_first_call():
    """Sanity of the test above: with after=1 every criterion hits the error."""
    for case in sorted(CASES):
        model = ExplodingNet(1).double()
        with pytest.raises(RuntimeError):
            _run(model, nets.images(1), case)


def test_in_place_rectifier_on_the_input():
    """A model whose first module is an in-place ReLU applied to the input: every criterion must work
    and must not overwrite the caller's x (book/methods.md: neurons, paths and sparsity: in-place ReLUs must not break hooks)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.ReLU(inplace=True), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    ).double().eval()
    problems = []
    for case in ("mct", "intgrad", "greedy", "greedy_original", "random", "dgr", "active", "dead_random", "dead_activation"):
        x = nets.images(2)
        x0 = x.clone()
        try:
            path = _run(model, x, case)
        except Exception as error:  # noqa: BLE001
            problems.append(f"{case}: {type(error).__name__}: {error}")
            continue
        if not torch.equal(x, x0):
            problems.append(f"{case}: x was modified in place")
            continue
        if case == "mct":
            ref, _ = R.mct_masks(model, x[:1], 60)
            R.assert_masks_equal(R.batch_masks(path, 0), ref, "mct on in-place input rectifier")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------- bad input


def _x(b=2):
    return nets.images(b)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(criterion="neuron_mtc"), ValueError, r"criterion must be one of.*neuron_mct"),
        (dict(criterion="greedy", variant="authors"), ValueError, r"variant.*original_code"),
        (dict(criterion="random", variant="original_code"), ValueError, r"variant.*intended"),
        (dict(sparsity=-1), ValueError, r"sparsity.*\[0, 100\)"),
        (dict(sparsity=100), ValueError, r"sparsity.*\[0, 100\)"),
        (dict(sparsity=float("nan")), ValueError, r"sparsity"),
        (dict(sparsity=[10, 20, 30]), ValueError, r"sparsity.*one value per image"),
        (dict(sparsity="ten"), TypeError, r"sparsity"),
        (dict(sparsity=None), ValueError, r"sparsity"),
        (dict(target=5), ValueError, r"target.*\[0, 5\)"),
        (dict(target=-1), ValueError, r"target.*\[0, 5\)"),
        (dict(target=[1, 2, 3]), ValueError, r"target.*one per image"),
        (dict(target=1.5), TypeError, r"target"),
        (dict(target=torch.tensor([1.0, 2.0])), TypeError, r"target"),
        (dict(target="cat"), TypeError, r"target"),
        (dict(foo=1), TypeError, r"foo.*accepted options"),
        (dict(seed=1), TypeError, r"seed.*accepted options"),  # neuron_mct is not seeded
        (dict(batch_size=0), ValueError, r"batch_size"),
        (dict(batch_size=1.5), ValueError, r"batch_size"),
        (dict(criterion="active_subnet", sparsity=50), ValueError, r"sparsity.*None"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = dict(model=nets.tiny_cnn(), x=_x(), criterion="neuron_mct", sparsity=50)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        pw.extract_pathway(**args)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.zeros(3, 8, 8, dtype=torch.float64), ValueError, r"x.*\(B, C, H, W\)"),
        (torch.zeros(1, 1, 3, 8, 8, dtype=torch.float64), ValueError, r"x.*\(B, C, H, W\)"),
        (torch.zeros(0, 3, 8, 8, dtype=torch.float64), ValueError, r"x"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.long), TypeError, r"x.*floating"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), TypeError, r"x.*floating"),
        (torch.zeros(2, 3, 8, 8).numpy(), TypeError, r"x.*Tensor"),
        ([[1.0]], TypeError, r"x.*Tensor"),
    ],
)
def test_bad_x(x, error, match):
    with pytest.raises(error, match=match):
        pw.extract_pathway(nets.tiny_cnn(), x, "neuron_mct", 50)


def test_model_without_rectifier():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(72, 3)).double()
    with pytest.raises(ValueError, match=r"model.*(rectifier|ReLU)"):
        pw.extract_pathway(model, _x(), "neuron_mct", 50)
    functional = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(72, 3), nn.Tanh()).double()
    with pytest.raises(ValueError, match=r"model"):
        pw.extract_pathway(functional, _x(), "random", 50)


def test_model_not_a_module():
    with pytest.raises(TypeError, match="model"):
        pw.extract_pathway(lambda x: x, _x(), "neuron_mct", 50)


def test_errors_leave_no_hooks():
    model = nets.tiny_cnn()
    before = State(model)
    for kwargs in (dict(target=7), dict(sparsity=101), dict(criterion="nope"), dict(steps=0, criterion="neuron_intgrad")):
        args = dict(model=model, x=_x(), criterion="neuron_mct", sparsity=50)
        args.update(kwargs)
        with pytest.raises((ValueError, TypeError)):
            pw.extract_pathway(**args)
    before.check(model, "after argument errors")


def test_sparsity_just_below_100_and_zero():
    model = nets.tiny_cnn()
    x = _x()
    path = pw.extract_pathway(model, x, "neuron_mct", 99.999)
    assert (path.sparsity >= 99.5).all()
    path = pw.extract_pathway(model, x, "random", 0)
    assert (path.sparsity == 0).all() and bool(path.flat().all())
    path = pw.extract_pathway(model, x, "random", 99.999)
    n = [m[0].numel() for m in path.masks]
    assert int((~path.flat()[0]).sum()) == sum(math.floor(99.999 / 100 * k) for k in n)
