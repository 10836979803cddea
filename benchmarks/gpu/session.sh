#!/usr/bin/env bash
# One device call: verify the book's cached results on another machine (its CPU, then its GPU), then
# time every criterion on the GPU. Prepare with benchmarks/gpu/fetch_wheels.sh, then run through the
# device tool with carry [".whl"] and timeout_s 600:   bash benchmarks/gpu/session.sh
# Everything lands in $OUT (or benchmarks/results without it), step by step, so a run cut short
# still returns what it finished.
set -o pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cpu capability', torch.backends.cpu.get_cpu_capability(), 'threads', torch.get_num_threads())"
    grep -m1 "model name" /proc/cpuinfo
} 2>&1 | tee "$out/machine.txt"
# 1. the committed caches on this machine's CPU: another CPU model, thread count and torch build
for e in maps_vs_sparsity qualitative sanity paths; do
    timeout 150 python3 -m pathlib_pw verify "$e" --profile book 2>&1 | grep -v Warning | tee -a "$out/verify_cpu.txt"
done
# 2. the same recomputed on the GPU (paths left out: Random draws from the GPU's own generator)
for e in maps_vs_sparsity qualitative sanity; do
    timeout 60 python3 -m pathlib_pw verify "$e" --profile book --device cuda 2>&1 | grep -v Warning | tee -a "$out/verify_cuda.txt"
done
# 3. timings
timeout 240 python3 benchmarks/bench_criteria.py --device cuda --models vgg16 resnet50 mobilenet_v2 \
    --batch-sizes 1 8 32 --quick --out "$out/cuda" 2>&1 | tee "$out/bench_criteria.txt"
