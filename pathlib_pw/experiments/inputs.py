"""Moved to :mod:`pathlib_pw.runner.inputs`; this name is the same module, kept for one release."""

import sys

from pathlib_pw.runner import inputs as _moved

sys.modules[__name__] = _moved
