"""pathlib_pw: critical pathways, PathwayGrad and their evaluation (Khakzar et al., CVPR 2021)."""

from pathlib_pw._version import __version__
from pathlib_pw.criteria import CRITERIA, VARIANTS, extract_pathway, extract_pathways
from pathlib_pw.data import load_imagenet_val, load_photos
from pathlib_pw.imagenet import preprocess
from pathlib_pw.metrics import dead_share, jaccard, output_change
from pathlib_pw.models import load_model
from pathlib_pw.pathway import Pathway
from pathlib_pw.saliency import SALIENCY_METHODS, pathway_grad, saliency
from pathlib_pw.sites import record_activations

__all__ = [
    "CRITERIA",
    "SALIENCY_METHODS",
    "VARIANTS",
    "Pathway",
    "dead_share",
    "extract_pathway",
    "extract_pathways",
    "jaccard",
    "load_imagenet_val",
    "load_model",
    "load_photos",
    "output_change",
    "pathway_grad",
    "preprocess",
    "record_activations",
    "saliency",
    "__version__",
]
