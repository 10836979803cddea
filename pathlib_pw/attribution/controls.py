"""The controls of Hooker et al., "A Benchmark for Interpretability Methods in Deep Neural Networks"
(ROAR, NeurIPS 2019): maps that ignore the model, against which the attribution methods are measured.
Registered as ``"random"`` and ``"sobel"`` (:mod:`pathlib_pw.attribution.registry`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pathlib_pw.attribution.maps import AttributionMethod, normalize
from pathlib_pw.sites import check_input

SOBEL_KERNEL = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def random_ranking(seed: int = 0) -> AttributionMethod:
    """The ROAR random control (Hooker et al., NeurIPS 2019): a fixed uniform map, whatever the image.

    The map is ``torch.rand(H, W)`` from a CPU ``torch.Generator`` seeded with ``seed``, divided by its
    maximum, the same for every image of every batch: it depends on the seed and the image size only,
    not on the batch's composition, the image's position in it, the model, the target or the device.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")

    def random_map(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = check_input(x)
        noise = torch.rand((1, *x.shape[2:]), generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
        return normalize(noise).expand(x.shape[0], -1, -1).contiguous().to(x.device)

    random_map.__doc__ = f"A uniform random map from seed {seed}, the same for every image (ROAR's random control)."
    return random_map


def sobel(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The ROAR Sobel control (Hooker et al., NeurIPS 2019): edge magnitude of the input, model-free.

    sqrt(sum over channels of Gx^2 + Gy^2), with Gx and Gy the horizontal and vertical 3x3 Sobel
    responses of the input as given (normalized images) and the border replicated (replicate padding,
    so the image's frame is not an edge), divided by each map's maximum: (B, H, W) in [0, 1].
    """
    x = check_input(x).detach()
    channels = x.shape[1]
    gx = torch.tensor(SOBEL_KERNEL, dtype=x.dtype, device=x.device)
    kernels = torch.stack([gx, gx.T]).unsqueeze(1).repeat(channels, 1, 1, 1)  # per channel: Gx, Gy
    responses = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels, groups=channels)
    return normalize(responses.square().sum(1).sqrt()).float()


__all__ = ["SOBEL_KERNEL", "random_ranking", "sobel"]
