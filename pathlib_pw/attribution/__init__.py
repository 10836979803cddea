"""Attribution maps in one home: PathwayGrad, the baselines, the controls, their registry and Quantus.

The one verb is ``attribute(model, x, method, *, target=None, **options)`` (also ``pathlib_pw.attribute``):
the maps (B, H, W) of a registered method's name or of any callable ``(model, x, target) -> maps``,
with ``target=None`` meaning the prediction; it takes the model and images first, like every function
of the package that runs the model.

- :mod:`~pathlib_pw.attribution.maps`: what every map shares (the method protocol, the channel
  reduction, the normalization to [-1, 1], the explained class, the input gradient);
- :mod:`~pathlib_pw.attribution.pathway_grad`: PathwayGrad, the paper's method, through a given Pathway;
- :mod:`~pathlib_pw.attribution.baselines`: the Captum-backed baselines (Gradients, InputMCT,
  InputIntGrad, Guided Backprop, Grad-CAM) by name, ``saliency(model, x, method)``;
- :mod:`~pathlib_pw.attribution.controls`: ROAR's model-free controls (random ranking, Sobel);
- :mod:`~pathlib_pw.attribution.registry`: the registry, ``attribute``, and the factories
  ``baseline_method`` and ``pathway_grad_method`` (which extract a criterion's pathway per batch);
- :mod:`~pathlib_pw.attribution.quantus`: any method as a Quantus ``explain_func``.

Import from the submodules (or from :mod:`pathlib_pw`): this package imports none of them, so that the
maps below the criteria (``maps``, ``pathway_grad``, ``baselines``, ``controls``) load without the
criteria the registry needs. ``pathlib_pw.saliency``, ``pathlib_pw.attribution_methods`` and
``pathlib_pw.quantus_adapter`` re-export the old names for one release.
"""
