"""Old spellings of the public API, kept for one release with a FutureWarning that names the new one.

The public functions follow one convention (README): functions that run the model take
``(model, x, subject, ...)`` with ``target`` keyword-only; ``criterion`` names a pathway criterion,
``method`` an attribution method, ``path`` a Pathway; amounts removed are in percent. The decorators
here translate the spellings that predate it, so that old code runs (and says what to write instead):

- :func:`renamed` maps an old keyword to its new name, optionally converting the value (a
  ``fraction`` becomes a ``percent`` times 100);
- :func:`keyword_only_from` turns positional arguments past the first ``n`` into the keywords they
  used to fill.

Both keep the wrapped function's signature for ``inspect.signature`` and the docs (``functools.wraps``
sets ``__wrapped__``), so the deprecated spellings stay out of the documented signature.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

from pathlib_pw.units import outside_stacklevel

F = TypeVar("F", bound=Callable[..., Any])
Converter = Callable[[Any], Any]


def warn(message: str) -> None:
    """A FutureWarning about an old spelling, pointed at the first caller outside this package."""
    warnings.warn(f"{message} (the old spelling works for one release)", FutureWarning, stacklevel=outside_stacklevel())


def percent_from_fraction(value: Any) -> Any:
    """A share (or a sequence of shares) of pixels as percent: the ``fraction=`` -> ``percent=`` conversion."""
    if isinstance(value, (list, tuple)):
        return [100 * v for v in value]
    return 100 * value


def renamed(**old: str | tuple[str, Converter]) -> Callable[[F], F]:
    """Accept ``old_name=value`` keywords as ``new_name=convert(value)`` with a FutureWarning.

    ``renamed(method="criterion")`` or ``renamed(fraction=("percent", percent_from_fraction))``.
    Giving both spellings raises TypeError.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old_name, spec in old.items():
                if old_name not in kwargs:
                    continue
                new_name, convert = (spec, None) if isinstance(spec, str) else spec
                if new_name in kwargs:
                    raise TypeError(f"{fn.__name__}() got both {old_name}= (deprecated) and {new_name}=; pass only {new_name}=")
                value = kwargs.pop(old_name)
                how = f" (in percent: {old_name} x 100)" if convert is percent_from_fraction else ""
                warn(f"{fn.__name__}({old_name}=...) is deprecated: pass {new_name}=...{how}")
                kwargs[new_name] = value if convert is None else convert(value)
            return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def keyword_only_from(n: int, *names: str) -> Callable[[F], F]:
    """Accept positional arguments past the first ``n`` as the keywords ``names`` (in their old order)
    with a FutureWarning naming the keyword spelling."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if len(args) > n:
                extra = args[n:]
                if len(extra) > len(names):
                    raise TypeError(
                        f"{fn.__name__}() takes {n} positional arguments (and {len(names)} deprecated ones) but {len(args)} were given"
                    )
                moved = names[: len(extra)]
                for name, value in zip(moved, extra):
                    if name in kwargs:
                        raise TypeError(f"{fn.__name__}() got multiple values for argument {name!r}")
                    kwargs[name] = value
                spelled = ", ".join(f"{name}=..." for name in moved)
                warn(f"passing {', '.join(moved)} to {fn.__name__}() by position is deprecated: pass {spelled} by keyword")
                args = args[:n]
            return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


__all__ = ["keyword_only_from", "percent_from_fraction", "renamed", "warn"]
