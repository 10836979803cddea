"""Moved to :mod:`pathlib_pw.runner.cache`; this name is the same module, kept for one release."""

import sys

from pathlib_pw.runner import cache as _moved

sys.modules[__name__] = _moved
