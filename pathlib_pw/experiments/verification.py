"""Moved to :mod:`pathlib_pw.runner.verification`; this name is the same module, kept for one release."""

import sys

from pathlib_pw.runner import verification as _moved

sys.modules[__name__] = _moved
