"""The book's verdict vocabulary and a decided claim (:class:`Evaluation`): the bottom of the package,
so that the registry (:mod:`pathlib_pw.claims`) and the experiments' tables modules that decide a
claim (``evaluate_claim``) share them without importing each other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args

__all__ = ["VERDICTS", "Evaluation", "Verdict"]

Verdict = Literal[
    "holds",
    "holds partly",
    "does not hold on our model",
    "inconclusive at this sample size",
    "not testable here",
]
# the one vocabulary of the book (book/intro.ipynb, how a verdict reads); "does not hold on our model" is what
# the book called "does not transfer" before
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)


@dataclass(frozen=True)
class Evaluation:
    """A claim decided on one profile's results.

    ``verdict``: one of :data:`VERDICTS`; ``qualifier``: a short parenthetical (may be empty);
    ``ours`` and ``paper``: markdown with our numbers and the paper's, as the intro's table shows
    them; ``numbers``: the computed numbers the rule used (read-only).
    """

    verdict: Verdict
    qualifier: str
    ours: str
    paper: str
    numbers: Mapping[str, float]

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {list(VERDICTS)}, got {self.verdict!r}")
        object.__setattr__(self, "numbers", MappingProxyType({str(k): float(v) for k, v in self.numbers.items()}))

    @property
    def text(self) -> str:
        """The verdict with its qualifier: ``holds partly (not for DGR(init=1))``."""
        return f"{self.verdict} ({self.qualifier})" if self.qualifier else self.verdict
