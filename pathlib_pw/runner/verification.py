"""Is a recomputed part of a cached result the same result? A comparison that holds on any machine.

What floating point can change, and the rule for each (the book's developer appendix, book/developer.md, states them):

- **Masks** come out of threshold decisions, which the recomputation replays against the records of
  the cached run (:mod:`pathlib_pw.decisions`): only few neurons, near the cut, may change, and the
  recorded mask is restored.
- **Numbers computed from the restored masks or without any threshold** (output changes, shares,
  overlaps, probabilities, similarities) differ by float rounding only: a tight relative tolerance.
- **Maps** are gradients: rounding can flip a ReLU whose input sits at zero, which moves the pixels of
  its receptive field by a little. A small share of the pixels may move, by a bounded amount.
- **Integers, labels and names** (predictions, counts) must agree exactly.

Each experiment may add per-array rules (``TOLERANCES``) and elementwise allowances derived from
what a replay saw (``tolerances``: counts that rounding moves although the masks are restored, and
numbers derived from chaotic paths, whose masks are not restored).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from pathlib_pw.decisions import ReplayReport


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """|fresh - cached| <= atol + rtol |cached| for all elements but a ``share`` of them, which may
    differ by at most ``limit``."""

    rtol: float = 0.0
    atol: float = 0.0
    share: float = 0.0
    limit: float = 0.0
    reason: str = ""
    per_map: bool = False  # the share applies to each map (the last two axes), not to the whole array


EXACT = Tolerance(reason="no rounding: must agree exactly")
FLOATS = Tolerance(rtol=1e-4, atol=1e-6, reason="float sums in another order")
# the share: a flipped ReLU moves the pixels of its receptive field, a larger share of a small map
# (measured: up to 0.7 % of a 224 px map; 2.2 % of a 64 px one, the second photo computed alone instead
# of in a batch of two); the limit: those pixels moved by up to 0.08 on the first photos, 0.34 on a
# PathwayGrad map of another photo without SIMD (its masks restored)
MAPS = Tolerance(
    rtol=1e-3,
    atol=1e-4,
    share=0.05,
    limit=0.6,
    per_map=True,
    reason="gradient maps: a ReLU whose input rounds to the other side of 0 moves the pixels it sees",
)
SIMILARITIES = Tolerance(
    atol=0.01,
    reason="similarities (Spearman, SSIM, HOG) of maps in which rounding moved a few pixels; measured up to 1e-3",
)
PROBABILITIES = Tolerance(
    rtol=1e-3,
    atol=2e-3,
    reason="softmax probabilities through a masked network, in which rounding can flip a ReLU; measured up to 8e-4",
)
HALF_MAPS = dataclasses.replace(MAPS, atol=1e-3, reason=MAPS.reason + "; stored in float16 (steps of 1e-3 near 1)")


@dataclasses.dataclass
class ArrayCheck:
    """One array of the recomputed part beside the cache."""

    name: str
    size: int
    largest: float  # largest absolute difference (0 for exact kinds that agree)
    differing: int  # elements not exactly equal
    outside: int  # elements beyond the tolerance
    tolerance: Tolerance
    problem: str = ""

    @property
    def status(self) -> str:
        if self.problem:
            return "DIFFERS"
        return "exact" if self.differing == 0 else "within tolerance"


def compare(name: str, fresh: np.ndarray, cached: np.ndarray, tol: Tolerance, extra: np.ndarray | None = None) -> ArrayCheck:
    """Compare one array by ``tol``; ``extra`` (broadcastable) adds an elementwise allowance to its atol."""
    fresh, cached = np.asarray(fresh), np.asarray(cached)
    if fresh.shape != cached.shape:
        return ArrayCheck(
            name, cached.size, math.inf, cached.size, cached.size, tol, f"shape {fresh.shape} recomputed, {cached.shape} cached"
        )
    if fresh.dtype.kind not in "fc" or cached.dtype.kind not in "fc":
        differing = int(np.count_nonzero(fresh != cached))
        problem = f"{differing} of {cached.size} elements differ (must agree exactly)" if differing else ""
        return ArrayCheck(name, cached.size, float(differing > 0), differing, differing, EXACT, problem)
    a, b = fresh.astype(np.float64), cached.astype(np.float64)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    both = ~(nan_a | nan_b)
    diff = np.where(both, np.abs(a - b), 0.0)
    nan_mismatch = int(np.count_nonzero(nan_a != nan_b))
    bound = tol.atol + (0.0 if extra is None else np.broadcast_to(extra, b.shape)) + tol.rtol * np.abs(np.where(both, b, 0.0))
    beyond = both & (diff > bound)
    outside = int(np.count_nonzero(beyond))
    differing = int(np.count_nonzero(both & (a != b))) + nan_mismatch
    largest = float(diff.max()) if diff.size else 0.0
    problems = []
    if nan_mismatch:
        problems.append(f"{nan_mismatch} elements are NaN on one side only")
    if tol.per_map and cached.ndim >= 2:
        per_map = beyond.reshape(-1, cached.shape[-2] * cached.shape[-1]).sum(1)
        allowed = math.floor(tol.share * cached.shape[-2] * cached.shape[-1])
        worst = int(per_map.max()) if per_map.size else 0
        if worst > allowed:
            problems.append(
                f"{int((per_map > allowed).sum())} maps have more than {allowed} pixels beyond tolerance (worst: {worst})"
            )
    else:
        allowed = math.floor(tol.share * cached.size)
        if outside > allowed:
            problems.append(f"{outside} of {cached.size} elements beyond tolerance (at most {allowed} may be)")
    if not problems and outside and largest > tol.limit:
        problems.append(f"largest difference {largest:.3g} (at most {tol.limit:g} for the few elements beyond tolerance)")
    if problems and outside:
        at = np.unravel_index(int(np.argmax(np.where(beyond, diff - bound, -np.inf))), cached.shape)
        problems.append(f"worst at index {tuple(int(i) for i in at)}: {a[at]:.6g} recomputed, {b[at]:.6g} cached")
    return ArrayCheck(name, cached.size, largest, differing, outside, tol, "; ".join(problems))


@dataclasses.dataclass
class Verification:
    """The outcome of :func:`pathlib_pw.experiments.verify`."""

    experiment: str
    profile: str
    arrays: list[ArrayCheck]
    replay: ReplayReport
    images: tuple[int, ...] = ()  # the image numbers recomputed
    note: str = ""  # how they were chosen
    free: tuple[int, ...] = ()  # the images recomputed without decision records (looser allowances)

    @classmethod
    def joined(cls, each: Sequence[Verification], note: str = "") -> Verification:
        """One verification of several images, each verified alone: their arrays (named with the image
        when there are several) and their replayed decisions together."""
        if not each:
            raise ValueError("each must hold at least one verification")
        several = len(each) > 1
        arrays = [
            dataclasses.replace(a, name=f"{a.name} (image {v.images[0]})") if several and v.images else a
            for v in each
            for a in v.arrays
        ]
        replay = ReplayReport(
            checks=[c for v in each for c in v.replay.checks],
            missing=[k for v in each for k in v.replay.missing],
            unused=[k for v in each for k in v.replay.unused],
        )
        images = tuple(i for v in each for i in v.images)
        free = tuple(i for v in each for i in v.free)
        return cls(each[0].experiment, each[0].profile, arrays, replay, images, note, free)

    @property
    def ok(self) -> bool:
        return self.replay.ok and all(not a.problem for a in self.arrays)

    @property
    def status(self) -> str:
        if not self.ok:
            return "DIFFERS"
        chaotic_equal = all(c.overlap == 1.0 for c in self.replay.chaotic().values())
        if self.replay.changed == 0 and all(a.differing == 0 for a in self.arrays) and chaotic_equal:
            return "matches exactly"
        free = f"; image(s) {', '.join(map(str, self.free))} without records: within the looser allowances" if self.free else ""
        return f"matches within floating-point tolerance ({self.replay.changed} threshold neurons flipped{free})"

    def text(self) -> str:
        """A report: the verdict, every array (largest difference, elements beyond exact / tolerance),
        the replayed decisions and every problem."""
        lines = [f"{self.experiment}/{self.profile}: {self.status}"]
        if self.note:
            lines.append(f"  recomputed: {self.note}")
        width = max((len(a.name) for a in self.arrays), default=0)
        for a in self.arrays:
            lines.append(
                f"  {a.name:<{width}}  {a.status:<16}  largest difference {a.largest:.3g}, "
                f"{a.differing} of {a.size} not exactly equal, {a.outside} beyond tolerance"
                + (f"  <- {a.problem}" if a.problem else "")
            )
        checks = self.replay.checks
        chaotic = [c for c in checks if c.kind == "chaotic"]
        lines.append(
            f"  threshold decisions replayed: {len(checks)}; neurons changed by rounding and restored: "
            f"{self.replay.changed}; largest distance of a changed neuron from its cut: "
            f"{max((c.worst_band for c in checks), default=0.0):.3g} x scale"
        )
        if chaotic:
            lowest = min(c.overlap for c in chaotic if c.overlap is not None)
            lines.append(
                f"  chaotic decisions (not restored): {len(chaotic)}, lowest estimated overlap with the record {lowest:.4f}"
            )
        lines += [f"  problem: {p}" for p in self.replay.problems()]
        return "\n".join(lines)

    def assert_ok(self) -> None:
        if not self.ok:
            raise AssertionError(self.text())


def compare_all(
    fresh: Mapping[str, np.ndarray],
    cached: Mapping[str, np.ndarray],
    rules: Mapping[str, Tolerance],
    elementwise: Mapping[str, np.ndarray],
    progress: bool = False,
    desc: str = "arrays compared",
) -> list[ArrayCheck]:
    """Every recomputed array beside the cached one, by its rule (``FLOATS`` for floats by default);
    ``progress`` shows a tqdm bar on stderr over the arrays (it never changes the comparison)."""
    out = []
    for name in tqdm(sorted(set(fresh) | set(cached)), desc=desc, unit="array", disable=not progress, file=sys.stderr):
        if name not in cached or name not in fresh:
            where = "the cache" if name not in cached else "the recomputation"
            out.append(ArrayCheck(name, 0, math.inf, 0, 0, EXACT, f"missing in {where}"))
            continue
        default = FLOATS if np.asarray(cached[name]).dtype.kind in "fc" else EXACT
        out.append(compare(name, fresh[name], cached[name], rules.get(name, default), elementwise.get(name)))
    return out
