"""Old home of the attribution registry, kept for one release: the names below are re-exported from
:mod:`pathlib_pw.attribution.registry` (``attribute``, the registry and its factories) and
:mod:`pathlib_pw.attribution.controls` (``random_ranking``, ``sobel``). Import them from there; this
module goes in the next release.
"""

from pathlib_pw.attribution.controls import random_ranking, sobel
from pathlib_pw.attribution.maps import AttributionMethod
from pathlib_pw.attribution.registry import (
    ACCUMULATED,
    ATTRIBUTION_METHODS,
    DEFAULT_NAMES,
    DEFAULT_PATHWAY_SPARSITY,
    PATHWAY_GRAD,
    attribute,
    attribution_method,
    baseline_method,
    pathway_grad_method,
    register_attribution,
)

__all__ = [
    "ACCUMULATED",
    "ATTRIBUTION_METHODS",
    "DEFAULT_NAMES",
    "DEFAULT_PATHWAY_SPARSITY",
    "PATHWAY_GRAD",
    "AttributionMethod",
    "attribute",
    "attribution_method",
    "baseline_method",
    "pathway_grad_method",
    "random_ranking",
    "register_attribution",
    "sobel",
]
