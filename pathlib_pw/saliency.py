"""Old home of PathwayGrad and the baselines, kept for one release: the names below are re-exported
from :mod:`pathlib_pw.attribution` (``pathway_grad`` from ``attribution.pathway_grad``, ``saliency``
and the baselines from ``attribution.baselines``, the shared map helpers from ``attribution.maps``)
and from :mod:`pathlib_pw.architectures` (``GRADCAM_LAYERS``). Import them from there; this module
goes in the next release.
"""

# the private names too (_input_gradient, _gradcam_layer, ...): other modules import them from here
from pathlib_pw.architectures import GRADCAM_LAYERS
from pathlib_pw.attribution.baselines import (  # noqa: F401
    SALIENCY_METHODS,
    SaliencyMethod,
    _authors_intgrad,
    _gradcam_layer,
    _last_conv_block,
    _PositiveGradient,
    guided_backprop,
    saliency,
)
from pathlib_pw.attribution.maps import Target, explained_class, normalize, reduce_channels
from pathlib_pw.attribution.maps import input_gradient as _input_gradient  # noqa: F401
from pathlib_pw.attribution.pathway_grad import pathway_grad

__all__ = [
    "GRADCAM_LAYERS",
    "SALIENCY_METHODS",
    "SaliencyMethod",
    "Target",
    "explained_class",
    "guided_backprop",
    "normalize",
    "pathway_grad",
    "reduce_channels",
    "saliency",
]
