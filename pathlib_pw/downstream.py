"""Moved to :mod:`pathlib_pw.criteria.downstream`, beside its one user (NeuronIntGrad); this name is the
same module, kept for one release."""

import sys

from pathlib_pw.criteria import downstream as _moved

sys.modules[__name__] = _moved
