#!/usr/bin/env bash
# One device call: check the GPU code paths against the CPU, then time the threshold's selection
# and every criterion. Prepare with benchmarks/gpu/fetch_wheels.sh, then run through the device tool
# with carry [".whl"] and timeout_s 600:   bash benchmarks/gpu/session.sh
# The tables land in $OUT (or benchmarks/results without it): cuda.md/.csv, check_device.txt, ...
set -o pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"
timeout 150 python3 benchmarks/check_device.py --device cuda 2>&1 | tee "$out/check_device.txt"
timeout 90 python3 benchmarks/bench_threshold.py --device cuda --batch-sizes 1 8 64 2>&1 | tee "$out/bench_threshold.txt"
timeout 330 python3 benchmarks/bench_criteria.py --device cuda --models vgg16 resnet50 mobilenet_v2 \
    --batch-sizes 1 8 32 64 --quick --out "$out/cuda" 2>&1 | tee "$out/bench_criteria.txt"
