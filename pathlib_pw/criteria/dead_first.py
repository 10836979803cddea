"""Dead-first controls: the dead neurons go first, then living ones at random or by activation.

NeuronMCT's scores are 0 for every dead neuron (activation <= 0 after the rectifier) and its
``score <= cut`` rule removes all of them at any sparsity: they come for free. The per-site Random
control (:mod:`pathlib_pw.criteria.random`) removes living neurons instead. These two controls get
the dead neurons for free too, and are thresholded like NeuronMCT (the global rule of book/methods.md: neurons, paths and sparsity):

- ``dead_first_random``: dead neurons first, then living neurons uniformly at random, over the whole
  network (global, not per site);
- ``dead_first_activation``: dead neurons first, then the living neurons of lowest activation (global).

Scores: 0 for a dead neuron (activation <= 0, the definition of :func:`pathlib_pw.metrics.base_sparsity`
and :func:`~pathlib_pw.metrics.dead_share`), a positive value for a living one; then
:func:`~pathlib_pw.thresholds.threshold_pathway`: with N neurons pooled over all sites and
k = floor(p/100 x (N - 1)), every neuron whose score is <= the (k+1)-th smallest score is removed
(what ``numpy.percentile`` and ``<=`` give). With D dead neurons:

- p with k < D (the requested sparsity at or below about the dead share): the cut is 0 and exactly the
  dead neurons go, so the realized sparsity is the dead share, above the requested one: what NeuronMCT
  does with its zero scores (NeuronMCT's zeros also include living neurons of zero gradient). At p = 0
  with no dead neuron, the one lowest-scored neuron goes (the percentile at 0 is the minimum).
- k >= D: the dead neurons and the lowest-scored living neurons up to the cut go: k + 1 neurons when
  no living score ties the cut.

Ties: all neurons whose score equals the cut go together. The random control's living scores are
distinct (a permutation), so it removes exactly max(D, k + 1) neurons. The activation control's
living scores are activations: two equal activations at the cut are rare in general, but a ReLU6
network's saturated neurons all sit at exactly 6 and tie; when the cut reaches 6, all of them go and
the realized sparsity exceeds the requested one (as NeuronMCT's would at a tie).

Both return, per level, a :class:`~pathlib_pw.pathway.Pathway` with ``info``: ``requested_sparsity``
(percent), ``threshold`` (the cut: a rank in (0, 1] for the random control, an activation for the
other, 0 when only dead neurons go), ``base_sparsity_share`` (the share of dead neurons, 0..1, per image)
and ``target`` (the explained class: not used by the masks, recorded like the other criteria's).
The same scores serve every level, so the paths of one image are nested.

Rounding (:mod:`pathlib_pw.decisions`): the dead/alive split hangs on activations, and a ReLU whose
input sits at zero may flip between machines; the neurons within rounding of zero are passed to the
decision as ``near_zero``, so such a flip is admitted (and restored on replay) whatever the random
rank of the flipped neuron. Both controls are ``FORWARD``: their scores come from the forward pass alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pathlib_pw.criteria._scores import hand_back
from pathlib_pw.criteria.seeds import per_image_seeds
from pathlib_pw.criteria.spec import FORWARD, CriterionSpec
from pathlib_pw.metrics import base_sparsity
from pathlib_pw.pathway import Pathway
from pathlib_pw.selection import add_all, map_images, per_image, split_like
from pathlib_pw.sites import record_activations, resolve_target
from pathlib_pw.thresholds import threshold_pathway

# activations at most this share of the image's mean activation count as within rounding of zero
NEAR_ZERO = 1e-3


def dead_first_scores(activations: Sequence[torch.Tensor], living: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per site: 0 where the activation is <= 0 (dead), ``living`` (positive) elsewhere."""
    return [torch.where(a <= 0, 0.0, s) for a, s in zip(activations, living)]


def random_ranks(seed: torch.Tensor | int, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A uniformly random ranking of each image's neurons, all sites pooled, as scores in (0, 1].

    Image b: ``torch.randperm(N)`` from a CPU generator seeded with its seed (one per image, see
    :func:`~pathlib_pw.criteria.seeds.per_image_seeds`); neuron i (sites in order, each flattened) scores
    ``(perm[i] + 1) / N`` (float64, all distinct). Drawn on the CPU and moved to ``like``'s device, so
    the draw is the same on every device and in chunked calls. Every neuron is ranked, dead or not, so
    the draw does not depend on the activations.
    """
    batch, device = like[0].shape[0], like[0].device
    n = sum(t[0].numel() for t in like)
    seeds = per_image_seeds(seed, batch)
    rows = torch.empty(batch, n, dtype=torch.float64, device=device)

    def draw(b: int) -> None:
        gen = torch.Generator().manual_seed(int(seeds[b]))
        rows[b].copy_(torch.randperm(n, generator=gen).add_(1).to(torch.float64).div_(n))

    if device.type == "cpu":  # randperm is one sequential kernel per call: images side by side
        map_images(draw, batch)
    else:
        for b in range(batch):
            draw(b)
    return split_like(rows, like)


def near_zero(activations: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per site: the neurons whose activation is at most ``NEAR_ZERO`` x the image's mean activation."""
    total = sum(a[0].numel() for a in activations)
    mean = add_all(a.flatten(1).sum(1, dtype=torch.float64) for a in activations) / total
    return [a <= per_image(NEAR_ZERO * mean, a) for a in activations]


def _dead_first(
    activations: list[torch.Tensor],
    living: Sequence[torch.Tensor],
    names: list[str],
    levels: list[torch.Tensor],
    method: str,
    target: torch.Tensor,
) -> list[Pathway]:
    scores = dead_first_scores(activations, living)
    hand_back(scores)
    zero = near_zero(activations)
    base = base_sparsity(activations).float()
    return [
        threshold_pathway(scores, p, names, method, near_zero=zero, base_sparsity_share=base, target=target.cpu()) for p in levels
    ]


def dead_first_random(
    model: nn.Module,
    x: torch.Tensor,
    levels: list[torch.Tensor],
    target: torch.Tensor | int | None,
    variant: str,
    seed: torch.Tensor | int = 0,
) -> list[Pathway]:
    """Every dead neuron removed, then living neurons uniformly at random over the whole network.

    Scores: 0 for dead neurons, :func:`random_ranks` for living ones; the paper's global threshold
    (see the module's docstring for ties, sparsities below the dead share and ``info``). ``levels``:
    sparsities in percent, one (B,) tensor per level; returns one Pathway per level. ``seed``: one int
    per image (``extract_pathway`` derives them from a single int), so a chunked call gives the same
    paths as one call over all images. The target does not change the path.
    """
    logits, acts, names = record_activations(model, x)
    tgt = resolve_target(target, logits)
    return _dead_first(acts, random_ranks(seed, acts), names, levels, "dead_first_random", tgt)


def dead_first_activation(
    model: nn.Module, x: torch.Tensor, levels: list[torch.Tensor], target: torch.Tensor | int | None, variant: str
) -> list[Pathway]:
    """Every dead neuron removed, then the living neurons of lowest activation, over the whole network.

    Scores: 0 for dead neurons, the activation (rectifier output, > 0) for living ones; the paper's
    global threshold (see the module's docstring: living neurons tied at the cut, such as a ReLU6's
    saturated neurons at 6, go together). ``levels``: sparsities in percent, one (B,) tensor per level;
    returns one Pathway per level, from one forward pass. The target does not change the path.
    """
    logits, acts, names = record_activations(model, x)
    tgt = resolve_target(target, logits)
    return _dead_first(acts, acts, names, levels, "dead_first_activation", tgt)


_OVERSHOOT = "this control removes every dead neuron first, whatever the request"
SPEC_RANDOM = CriterionSpec(
    "dead_first_random",
    dead_first_random,
    "dead neurons first, then living neurons uniformly at random, global threshold",
    options=("seed",),
    seeded=True,
    rounding=FORWARD,
    overshoot=_OVERSHOOT,
    scores=True,
)
SPEC_ACTIVATION = CriterionSpec(
    "dead_first_activation",
    dead_first_activation,
    "dead neurons first, then living neurons of lowest activation, global threshold",
    rounding=FORWARD,
    overshoot=_OVERSHOOT,
    scores=True,
)
