"""The active recording or replay and what names its decisions: :func:`recording` / :func:`replaying`
start one, :func:`scope` and :func:`images` (and :func:`rows` for a chunk of a batch) name the decisions
made inside, :func:`criterion` says how far rounding may move them (a :class:`Rounding`) and
:func:`widened` widens those bounds for a measurement. Each is a context manager over a context variable,
so every setting is undone when its block ends, also on an exception."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Literal

from pathlib_pw.decisions.records import DecisionLog, ReplayReport


@dataclasses.dataclass(frozen=True)
class Rounding:
    """How far rounding may move one criterion's threshold decisions.

    ``kind``: ``"exact"`` (no float decides the mask, e.g. Random: every neuron must agree),
    ``"threshold"`` (scores against a cut: at most ``capacity`` x neurons (and never fewer than
    ``MIN_CHANGES``) may change per decision,
    each with ``|score - cut| <= band x scale``, scale = max(|cut|, the image's mean |score|)) or
    ``"chaotic"`` (the kept set must overlap the recorded one by at least ``overlap``, Jaccard).
    """

    kind: Literal["exact", "threshold", "chaotic"]
    capacity: float = 0.0
    band: float = 0.0
    overlap: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("exact", "threshold", "chaotic"):
            raise ValueError(f"kind must be one of ['exact', 'threshold', 'chaotic'], got {self.kind!r}")


EXACT = Rounding("exact")
# a threshold decision over a small net (the digits CNN's 3,584 neurons) still sees a few scores within
# rounding of the cut: 2 flipped on a build without SIMD, where the capacity alone would allow 1
MIN_CHANGES = 3


@dataclasses.dataclass
class _Session:
    mode: Literal["record", "replay"]
    log: DecisionLog
    wanted: frozenset[str] | None = None  # record: only these image keys
    report: ReplayReport = dataclasses.field(default_factory=ReplayReport)
    used: set[str] = dataclasses.field(default_factory=set)
    ordinals: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)


_SESSION: contextvars.ContextVar[_Session | None] = contextvars.ContextVar("pathlib_pw_decisions", default=None)
_SCOPE: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("pathlib_pw_scope", default=())
_IMAGES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("pathlib_pw_images", default=None)
_ROUNDING: contextvars.ContextVar[Rounding] = contextvars.ContextVar("pathlib_pw_rounding", default=EXACT)
_WIDENED: contextvars.ContextVar[float] = contextvars.ContextVar("pathlib_pw_widened", default=1.0)


@contextlib.contextmanager
def _set(var: contextvars.ContextVar, value: object) -> Iterator[None]:
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def scope(name: str) -> contextlib.AbstractContextManager[None]:
    """Name the part of a computation whose decisions follow (nested scopes join with ``/``)."""
    if "|" in name:
        raise ValueError(f"name must not contain '|', got {name!r}")
    return _set(_SCOPE, _SCOPE.get() + (name,))


def images(keys: Sequence[object]) -> contextlib.AbstractContextManager[None]:
    """Name the images of the batch whose decisions follow, one key per row (e.g. their index)."""
    names = tuple(str(k) for k in keys)
    if any("|" in k for k in names):
        raise ValueError("image keys must not contain '|'")
    return _set(_IMAGES, names)


def rows(index: slice) -> contextlib.AbstractContextManager[None]:
    """The named images restricted to ``index`` (a chunk of the batch); no-op when none are named."""
    current = _IMAGES.get()
    return _set(_IMAGES, None if current is None else current[index])


def criterion(rounding: Rounding) -> contextlib.AbstractContextManager[None]:
    """The rounding class of the criterion whose decisions follow."""
    return _set(_ROUNDING, rounding)


def widened(factor: float) -> contextlib.AbstractContextManager[None]:
    """Every threshold criterion's capacity and band times ``factor`` inside the block, for records and
    replays alike: a measurement of how far rounding really moves the decisions (the sketches then
    decode ``factor`` times more changes), never a verification (scripts/measure_rounding.py)."""
    if not (isinstance(factor, (int, float)) and factor >= 1):
        raise ValueError(f"factor must be a number >= 1, got {factor!r}")
    return _set(_WIDENED, float(factor))


def _active_rounding() -> Rounding:
    rounding, factor = _ROUNDING.get(), _WIDENED.get()
    if rounding.kind != "threshold" or factor == 1.0:
        return rounding
    return dataclasses.replace(rounding, capacity=rounding.capacity * factor, band=rounding.band * factor)


@contextlib.contextmanager
def recording(only: Sequence[object] | None = None) -> Iterator[DecisionLog]:
    """Record the decisions made inside the block (for the image keys in ``only``, default all)."""
    session = _Session("record", DecisionLog(), None if only is None else frozenset(str(k) for k in only))
    with _set(_SESSION, session), _set(_SCOPE, ()), _set(_IMAGES, None):
        yield session.log


@contextlib.contextmanager
def replaying(log: DecisionLog, complete: bool = True) -> Iterator[ReplayReport]:
    """Check the decisions made inside the block against ``log`` and restore the recorded masks.

    With ``complete``, recorded decisions that the block did not make are reported as ``unused``.
    """
    session = _Session("replay", log)
    with _set(_SESSION, session), _set(_SCOPE, ()), _set(_IMAGES, None):
        yield session.report
    if complete:
        session.report.unused = [k for k in log.records if k not in session.used]
