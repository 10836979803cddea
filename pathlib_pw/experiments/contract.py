"""Moved to :mod:`pathlib_pw.runner.contract`; this name is the same module, kept for one release."""

import sys

from pathlib_pw.runner import contract as _moved

sys.modules[__name__] = _moved
