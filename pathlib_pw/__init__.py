"""pathlib_pw: critical pathways, PathwayGrad and their evaluation (Khakzar et al., CVPR 2021)."""

from pathlib_pw import architectures  # noqa: F401  (registers the built-in architectures and their models)
from pathlib_pw import saliency as _saliency_module  # noqa: F401  (loaded first: see below)
from pathlib_pw._version import __version__
from pathlib_pw.attribution.baselines import SALIENCY_METHODS, saliency
from pathlib_pw.attribution.pathway_grad import pathway_grad
from pathlib_pw.attribution.quantus import quantus_explain_func
from pathlib_pw.attribution.registry import (
    ATTRIBUTION_METHODS,
    attribute,
    attribution_method,
    pathway_grad_method,
    register_attribution,
)
from pathlib_pw.criteria import CRITERIA, VARIANTS, extract_pathway, extract_pathways
from pathlib_pw.data import load_imagenet_val, load_photos
from pathlib_pw.imagenet import preprocess
from pathlib_pw.linearity import first_order_error, linear_region_radius, state_flip_share
from pathlib_pw.metrics import dead_share, dead_share_of, jaccard, output_change
from pathlib_pw.models import load_model
from pathlib_pw.pathway import Pathway
from pathlib_pw.removal import area_under_curve, pixel_removal_curve, remove_pixels
from pathlib_pw.sites import record_activations

# ``pathlib_pw.saliency`` is the function: the module of that name (kept for one release) was loaded
# above, before the function's binding, so that its import cannot rebind the package attribute later
del _saliency_module

__all__ = [
    "ATTRIBUTION_METHODS",
    "CRITERIA",
    "SALIENCY_METHODS",
    "VARIANTS",
    "Pathway",
    "area_under_curve",
    "attribute",
    "attribution_method",
    "dead_share",
    "dead_share_of",
    "extract_pathway",
    "extract_pathways",
    "first_order_error",
    "jaccard",
    "linear_region_radius",
    "load_imagenet_val",
    "load_model",
    "load_photos",
    "output_change",
    "pathway_grad_method",
    "pixel_removal_curve",
    "quantus_explain_func",
    "register_attribution",
    "remove_pixels",
    "pathway_grad",
    "preprocess",
    "record_activations",
    "saliency",
    "state_flip_share",
    "__version__",
]
