"""The machinery that runs, caches and checks the book's experiments, apart from the experiments
themselves (:mod:`pathlib_pw.experiments`, one module per chapter):

- :mod:`~pathlib_pw.runner.contract`: what an experiment module provides, and the defaults of its
  optional parts;
- :mod:`~pathlib_pw.runner.inputs`: the images and model an experiment runs on (``Inputs``);
- :mod:`~pathlib_pw.runner.cache`: results on disk, keyed by the configuration and library version, with
  a digest of every stored number, written atomically;
- :mod:`~pathlib_pw.runner.verification`: the rules by which a recomputed part of a result is the same
  result on another machine;
- :mod:`~pathlib_pw.experiments.requirements`: what a profile needs (weights, data folders), checked before any
  work.

The registry of experiments, ``load_or_run``, ``verify`` and the sharded runs (:mod:`pathlib_pw.experiments`,
:mod:`pathlib_pw.experiments.sharding`) sit above both, since they drive the experiments by name.
"""
