"""One convention for amounts: anything removed is in percent (0-100), measured ratios are shares in [0, 1].

An amount removed written as 0 < value < 1 (for a list: every nonzero value below 1) is almost
certainly a share typed where percent is meant: ``sparsity=0.9`` removes 0.9 % of the neurons, not
90 %. It still runs (0.5 % is a legitimate amount), but :func:`warn_if_share` says so once per call.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

__all__ = ["outside_stacklevel", "warn_if_share"]

_PACKAGE = str(Path(__file__).resolve().parent) + os.sep  # with the separator: not pathlib_pw_demo.py


def outside_stacklevel() -> int:
    """The ``stacklevel`` that points a warning raised in this package at the first caller outside it.

    Warnings about a user's arguments should name the user's line, whatever chain of public
    functions and deprecation wrappers led there.
    """
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def warn_if_share(name: str, values: float | Iterable[float], *, was_share: bool = False) -> None:
    """Warn when the amounts removed in ``name`` look like shares (every nonzero value in (0, 1)).

    ``was_share``: the argument took a share in earlier versions (the pixel-removal functions); the
    warning is then a FutureWarning that says so, since an old positional call now means 100x less.
    """
    listed = [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]
    nonzero = [v for v in listed if v != 0]
    if not nonzero or not all(0 < v < 1 for v in nonzero):
        return
    if len(listed) == 1:
        said = f"{name}={listed[0]:g} is {listed[0]:g} %; did you mean {100 * listed[0]:g} %?"
    else:
        given = ", ".join(f"{v:g}" for v in listed)
        meant = ", ".join(f"{100 * v:g}" for v in listed)
        said = f"{name}=[{given}] are percent; did you mean [{meant}] %?"
    history = f" {name} was a share in [0, 1] in earlier versions of pathlib_pw and is percent now." if was_share else ""
    warnings.warn(
        f"{said} (amounts removed are in percent, 0-100){history}",
        FutureWarning if was_share else UserWarning,
        stacklevel=outside_stacklevel(),
    )
