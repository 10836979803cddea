"""Compare every criterion and map computed on a device with the same computation on the CPU.

    python benchmarks/check_device.py --device cuda
    python benchmarks/check_device.py --device cuda --size 224 --photos chelsea coffee rocket

The unit tests run on the CPU only; this script is the check of the GPU code paths (the sampled
bracket threshold, device-side masks, DGR's gates, NeuronIntGrad's alpha passes). MobileNetV2 with
its ImageNet weights on bundled photos, both devices in fp32 with TF32 disabled. Float sums differ
between devices, so a few neurons at a threshold may flip: the script prints, per method, the
largest realized-sparsity difference, the smallest share of neurons with the same mask bit, and
the largest difference of the PathwayGrad maps, and exits with 1 if any is outside its tolerance.
Random draws from each device's own generator, so only its realized sparsity is compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pathlib_pw as pw  # noqa: E402
from pathlib_pw.experiments import full_precision  # noqa: E402

CRITERIA: dict[str, tuple[str, str, dict]] = {
    "NeuronMCT": ("neuron_mct", "intended", {}),
    "NeuronIntGrad": ("neuron_intgrad", "intended", {}),
    "NeuronIntGrad (original code)": ("neuron_intgrad", "original_code", {}),
    "Greedy (authors' loop, 10 rounds)": ("greedy", "original_code", {"rounds": 10}),
    "Random": ("random", "intended", {}),
    "DGR (100 iterations)": ("dgr", "intended", {"iterations": 100, "init": "1"}),
}
TOLERANCE = {"sparsity_pp": 0.05, "agreement": 0.999, "map": 0.05}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--photos", nargs="+", default=["chelsea", "coffee"])
    parser.add_argument("--sparsity", type=float, default=70.0)
    args = parser.parse_args()
    with full_precision():  # float32 on the GPU as on the CPU: no TF32
        return compare(args)


def compare(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    x, _ = pw.load_photos(args.photos, size=args.size)
    models = {d: pw.load_model("mobilenet_v2", device=d) for d in ("cpu", device)}
    failed = False
    print(f"{'method':36s} {'sparsity diff (pp)':>18s} {'same mask bit':>14s} {'map max diff':>13s}")
    for label, (method, variant, options) in CRITERIA.items():
        paths = {d: pw.extract_pathway(m, x.to(d), method, args.sparsity, variant=variant, **options).to("cpu")
                 for d, m in models.items()}
        cpu, dev = paths["cpu"], paths[device]
        sparsity = float((cpu.sparsity - dev.sparsity).abs().max())
        same = float((cpu.flat() == dev.flat()).float().mean(1).min()) if method != "random" else float("nan")
        maps = {d: pw.pathway_grad(m, x.to(d), paths[d].to(d)).cpu() for d, m in models.items()}
        diff = float((maps["cpu"] - maps[device]).abs().max()) if method != "random" else float("nan")
        bad = sparsity > TOLERANCE["sparsity_pp"] or same < TOLERANCE["agreement"] or diff > TOLERANCE["map"]
        failed |= bad
        print(f"{label:36s} {sparsity:18.4f} {same:14.5f} {diff:13.4f}{'  <- outside tolerance' if bad else ''}")
    for method in pw.SALIENCY_METHODS:
        maps = {d: pw.saliency(m, x.to(d), method).cpu() for d, m in models.items()}
        diff = float((maps["cpu"] - maps[device]).abs().max())
        bad = diff > TOLERANCE["map"]
        failed |= bad
        print(f"{method:36s} {'':>18s} {'':>14s} {diff:13.4f}{'  <- outside tolerance' if bad else ''}")
    print("tolerances:", TOLERANCE, "->", "FAILED" if failed else "all within")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
