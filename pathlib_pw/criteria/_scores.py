"""The per-neuron scores a criterion thresholds, handed back to ``extract_pathways(return_scores=True)``.

A criterion whose paths come from one set of per-neuron scores (``CriterionSpec.scores``) calls
:func:`hand_back` with them right before its threshold decisions; :func:`collecting`, which the
dispatcher opens around each call of a criterion function, keeps what is handed back. Outside a
collecting block that asks for them the scores are dropped. The criterion functions keep their
``list[Pathway]`` return, so every existing call shape works unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

import torch

_HANDED: ContextVar[list[list[torch.Tensor]] | None] = ContextVar("pathlib_pw_criterion_scores", default=None)


def hand_back(scores: Sequence[torch.Tensor]) -> None:
    """Offer the per-site scores (B, ...) the criterion's threshold decisions are made on (detached);
    kept only inside :func:`collecting` with ``keep=True``."""
    handed = _HANDED.get()
    if handed is not None:
        handed.append([s.detach() for s in scores])


@contextlib.contextmanager
def collecting(keep: bool = True) -> Iterator[list[list[torch.Tensor]]]:
    """The scores handed back inside the block, one list per :func:`hand_back` call (an empty list
    and nothing kept when ``keep`` is False, so that a nested call never hands its scores to an
    outer block)."""
    handed: list[list[torch.Tensor]] = []
    token = _HANDED.set(handed if keep else None)
    try:
        yield handed
    finally:
        _HANDED.reset(token)
