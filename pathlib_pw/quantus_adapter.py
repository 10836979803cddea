"""Old home of the Quantus adapter, kept for one release: re-exported from
:mod:`pathlib_pw.attribution.quantus`. Import it from there; this module goes in the next release.
"""

from pathlib_pw.attribution.quantus import QUANTUS_KWARGS, ExplainFunc, quantus_explain_func

__all__ = ["QUANTUS_KWARGS", "ExplainFunc", "quantus_explain_func"]
