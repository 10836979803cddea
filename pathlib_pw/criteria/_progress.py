"""Progress bars over the criteria's long loops, shown when a call passes ``progress=True``.

:func:`pathlib_pw.extract_pathways` switches the bars on for the duration of a call with
:func:`showing`; a criterion wraps its outer loop in :func:`bar` and never needs to know whether the
bar is drawn. Bars only report: they do not touch the computation.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from contextvars import ContextVar

from tqdm import tqdm

_SHOWN: ContextVar[bool] = ContextVar("pathlib_pw_progress_shown", default=False)
_DRAWN: ContextVar[int] = ContextVar("pathlib_pw_progress_drawn", default=0)  # bars drawn now


def check(progress: object) -> None:
    """A TypeError unless ``progress`` is a bool."""
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool (True or False), got {progress!r}")


@contextlib.contextmanager
def showing(progress: bool) -> Iterator[None]:
    """Draw the bars opened by :func:`bar` inside this block if ``progress``, else none."""
    check(progress)
    token = _SHOWN.set(progress)
    try:
        yield
    finally:
        _SHOWN.reset(token)


@contextlib.contextmanager
def bar(total: int, desc: str, unit: str = "it", show: bool = True) -> Iterator[tqdm]:
    """A tqdm bar on stderr, closed on leaving the block (also on an exception); drawn inside
    ``showing(True)`` when ``show``; a bar drawn inside another drawn bar disappears when done."""
    drawn = show and _SHOWN.get()
    depth = _DRAWN.get()
    token = _DRAWN.set(depth + int(drawn))
    try:
        with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=depth == 0, disable=not drawn) as t:
            yield t
    finally:
        _DRAWN.reset(token)
