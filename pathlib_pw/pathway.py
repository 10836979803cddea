"""A pathway: one boolean keep-mask per rectifier site, per image (book/methods.md: neurons, paths and sparsity)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from typing import IO, Any

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

from pathlib_pw import _deprecation
from pathlib_pw.selection import add_all, count_true, pooled
from pathlib_pw.sites import Trace, activations_and_gradients, hooked

# the version of the file format written by Pathway.save
FORMAT = "pathlib_pw.Pathway"
FORMAT_VERSION = 1


@dataclasses.dataclass(init=False, eq=False, repr=False)
class Pathway:
    """Binary masks (1 = kept) for B images.

    ``masks[s]`` has shape ``(B, *site_shape)`` and dtype bool, ``sites[s]`` is the site's name (see
    :mod:`pathlib_pw.sites`), ``sparsity`` is the realized share of removed neurons in percent,
    shape ``(B,)``, ``criterion`` the name of the criterion that found it. ``info`` carries
    per-criterion extras (requested sparsity, thresholds, DGR convergence flags ...): a tensor with
    at least one dimension is per image and must have B rows (indexing and :meth:`cat` take its rows
    along with the masks; any other first dimension raises ValueError naming the key); a value shared
    by all images is a plain value (a number, string, list ...) or a 0-d tensor.

    ``==`` compares contents: the same sites and criterion, masks of the same shapes and values, equal
    realized sparsity and equal ``info`` (tensors by ``torch.equal``); it returns a bool and never
    raises on tensors. A Pathway is mutable, hence unhashable.

    Store one with :meth:`save` / :meth:`load` (a portable .npz without pickle). ``torch.save`` of a
    Pathway needs pickle: ``torch.load`` refuses it under ``weights_only=True`` (its default since
    torch 2.6), and unpickling runs code from the file; use :meth:`save` and :meth:`load` instead.

    ``method`` is the former name of ``criterion``: ``Pathway(..., method=...)`` and ``path.method``
    still work for one release, with a FutureWarning.

    Examples
    --------
    >>> import io
    >>> import torch
    >>> import pathlib_pw as pw
    >>> model = pw.load_model("mobilenet_v2")
    >>> x, names = pw.load_photos(["chelsea", "coffee"])
    >>> path = pw.extract_pathway(model, x, "neuron_mct", 50)  # 50 % of the neurons removed, per image
    >>> path  # doctest: +ELLIPSIS
    Pathway(criterion='neuron_mct', images=2, sites=35, neurons=6,105,792 per image, requested sparsity 50 %, ...)
    >>> path.sites[:2], path.masks[0].shape, path.masks[0].dtype
    (['features.0.2', 'features.1.conv.0.2'], torch.Size([2, 32, 112, 112]), torch.bool)
    >>> with path.applied(model):  # the masked network; the hooks are removed on exit
    ...     masked_logits = model(x)
    >>> file = io.BytesIO()  # or a file name: portable .npz, no pickle
    >>> path.save(file)
    >>> _ = file.seek(0)
    >>> pw.Pathway.load(file) == path
    True
    >>> hand = pw.Pathway.from_masks([torch.tensor([[1, 0, 0, 1]])], ["relu"], "by hand")
    >>> hand.sparsity
    tensor([50.])
    """

    masks: list[torch.Tensor]
    sites: list[str]
    sparsity: torch.Tensor
    criterion: str = ""
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    __hash__ = None  # type: ignore[assignment]  # mutable: equal pathways may change

    @_deprecation.renamed(method="criterion")
    def __init__(
        self,
        masks: list[torch.Tensor],
        sites: list[str],
        sparsity: torch.Tensor,
        criterion: str = "",
        info: dict[str, Any] | None = None,
    ) -> None:
        self.masks = masks
        self.sites = sites
        self.sparsity = sparsity
        self.criterion = criterion
        self.info = {} if info is None else info
        self.__post_init__()

    def __post_init__(self) -> None:
        if len(self.masks) != len(self.sites):
            raise ValueError(f"masks has {len(self.masks)} entries but sites has {len(self.sites)}")
        if self.masks and any(m.dtype != torch.bool for m in self.masks):
            raise TypeError("masks must be boolean tensors")
        if self.masks:
            _check_info(self.info, self.batch_size)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, also a Pathway pickled before ``method`` was renamed ``criterion``."""
        if "method" in state and "criterion" not in state:
            state = {**state, "criterion": state["method"]}
            del state["method"]
        self.__dict__.update(state)

    @property
    def method(self) -> str:
        """Deprecated name of :attr:`criterion`."""
        _deprecation.warn("Pathway.method is deprecated: read Pathway.criterion")
        return self.criterion

    @classmethod
    @_deprecation.renamed(method="criterion")
    def from_masks(cls, masks: Sequence[torch.Tensor], sites: Sequence[str], criterion: str = "", **info: Any) -> Pathway:
        """A Pathway of these masks (made boolean), its realized sparsity computed; ``info`` as keywords.

        ``method=`` is the deprecated spelling of ``criterion=`` (a FutureWarning).
        """
        masks = [m.bool() for m in masks]
        if not masks:
            raise ValueError("masks must hold at least one site's mask (B, *site shape)")
        return cls(list(masks), list(sites), realized_sparsity(masks), criterion, dict(info))

    def __repr__(self) -> str:
        """One line: criterion, images, sites, neurons per image, requested and realized sparsity (never the masks)."""
        parts = [f"criterion={self.criterion!r}", f"images={len(self.sparsity)}", f"sites={len(self.sites)}"]
        if self.masks:
            parts.append(f"neurons={self.num_neurons:,} per image")
        requested = self.info.get("requested_sparsity")
        if requested is not None:
            values = torch.as_tensor(requested).flatten().double()
            if values.numel():
                low, high = float(values.min()), float(values.max())
                parts.append(f"requested sparsity {low:g} %" if low == high else f"requested sparsity {low:g}-{high:g} %")
        if self.sparsity.numel():
            low, high = float(self.sparsity.min()), float(self.sparsity.max())
            parts.append(f"realized {low:.1f} %" if f"{low:.1f}" == f"{high:.1f}" else f"realized {low:.1f}-{high:.1f} %")
        return f"Pathway({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        """Same sites, criterion, mask shapes and values, realized sparsity and info (tensors by torch.equal)."""
        if not isinstance(other, Pathway):
            return NotImplemented
        return (
            self.sites == other.sites
            and self.criterion == other.criterion
            and len(self.masks) == len(other.masks)
            and all(_same_tensor(a, b) for a, b in zip(self.masks, other.masks))
            and _same_tensor(self.sparsity, other.sparsity)
            and _same_value(self.info, other.info)
        )

    def save(self, file: str | os.PathLike[str] | IO[bytes]) -> None:
        """Write this pathway to ``file`` as one .npz without pickle (read it with :meth:`load`).

        The masks are bit-packed (``np.packbits``) with their shapes, the realized sparsity and every
        tensor in ``info`` are stored as arrays, and a JSON header (sites, criterion, format version,
        the other ``info`` values) as a uint8 array. ``info`` values must be tensors or
        JSON-serializable (numbers, strings, bools, None, lists and dicts of them): anything else
        raises TypeError naming the key.
        """
        arrays: dict[str, np.ndarray] = {}
        tensors: dict[str, dict[str, Any]] = {}
        plain: dict[str, Any] = {}
        for s, mask in enumerate(self.masks):
            arrays[f"mask_{s}"] = np.packbits(mask.detach().cpu().numpy().reshape(-1))
        arrays["sparsity"] = self.sparsity.detach().cpu().numpy()
        for i, (key, value) in enumerate(self.info.items()):
            if not isinstance(key, str):
                raise TypeError(f"info key {key!r} must be a str to be saved")
            if isinstance(value, torch.Tensor):
                name = f"info_{i}"
                tensor = value.detach().cpu()
                arrays[name] = tensor.numpy() if tensor.dtype != torch.bfloat16 else tensor.float().numpy()
                tensors[key] = {"array": name, "dtype": str(tensor.dtype).removeprefix("torch.")}
                continue
            try:
                json.dumps(value, allow_nan=True)
            except (TypeError, ValueError) as error:
                raise TypeError(
                    f"info[{key!r}] is a {type(value).__name__}, which Pathway.save cannot store: info values must be "
                    f"tensors or JSON-serializable (numbers, strings, bools, None, lists, dicts) ({error})"
                ) from None
            plain[key] = value
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "sites": list(self.sites),
            "criterion": self.criterion,
            "mask_shapes": [list(m.shape) for m in self.masks],
            "sparsity_dtype": str(self.sparsity.dtype).removeprefix("torch."),
            "info_tensors": tensors,
            "info": plain,
            "info_order": list(self.info),
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        entries: dict[str, Any] = arrays
        if isinstance(file, (str, os.PathLike)):
            with open(file, "wb") as handle:
                np.savez_compressed(handle, **entries)  # an open file: numpy would append .npz to a name
        else:
            np.savez_compressed(file, **entries)

    @classmethod
    def load(cls, file: str | os.PathLike[str] | IO[bytes]) -> Pathway:
        """A pathway written by :meth:`save` (read with ``allow_pickle=False``).

        A file that is not such a pathway (another format, a damaged or truncated file) raises
        ValueError.
        """
        name = os.fspath(file) if isinstance(file, (str, os.PathLike)) else getattr(file, "name", "the file")
        try:
            with np.load(file, allow_pickle=False) as stored:
                arrays = {key: stored[key] for key in stored.files}
        except FileNotFoundError:
            raise
        except Exception as error:  # noqa: BLE001  (zipfile, zlib, numpy: every way a foreign file fails)
            # numpy takes any file that is not an array or archive for a pickle: say what it is not
            why = "not a .npz archive" if "pickle" in str(error) else str(error)
            raise ValueError(f"{name!s} is not a Pathway file written by Pathway.save ({why})") from None
        try:
            header = json.loads(bytes(arrays["header"].astype(np.uint8)).decode("utf-8"))
            if header.get("format") != FORMAT:
                raise ValueError(f"format {header.get('format')!r}")
            if header.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {header.get('version')!r}, this library reads {FORMAT_VERSION}")
            masks = []
            for s, shape in enumerate(header["mask_shapes"]):
                count = int(np.prod(shape)) if shape else 1
                bits = np.unpackbits(arrays[f"mask_{s}"], count=count)
                masks.append(torch.from_numpy(bits.astype(bool).reshape(shape)))
            sparsity = torch.from_numpy(np.array(arrays["sparsity"])).to(getattr(torch, header["sparsity_dtype"]))
            info: dict[str, Any] = {}
            for key in header["info_order"]:
                if key in header["info_tensors"]:
                    entry = header["info_tensors"][key]
                    info[key] = torch.from_numpy(np.array(arrays[entry["array"]])).to(getattr(torch, entry["dtype"]))
                else:
                    info[key] = header["info"][key]
            return cls(masks, list(header["sites"]), sparsity, str(header["criterion"]), info)
        except (KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{name!s} is not a valid Pathway file written by Pathway.save ({error!r})") from None

    @property
    def batch_size(self) -> int:
        return self.masks[0].shape[0]

    def __len__(self) -> int:
        return self.batch_size

    @property
    def num_neurons(self) -> int:
        """Neurons per image, all sites together."""
        return sum(m[0].numel() for m in self.masks)

    def kept_per_site(self) -> torch.Tensor:
        """Share of kept neurons, shape (B, n_sites)."""
        return torch.stack([m.flatten(1).float().mean(1) for m in self.masks], dim=1)

    def flat(self) -> torch.Tensor:
        """All masks of each image concatenated: (B, num_neurons)."""
        return pooled(self.masks)

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor) -> Pathway:
        if isinstance(index, int):
            index = [index]
        _check_info(self.info, self.batch_size)  # info may have changed since construction
        return Pathway(
            [m[index] for m in self.masks],
            list(self.sites),
            self.sparsity[index],
            self.criterion,
            {k: (v[index] if _is_batched(v, self.batch_size) else v) for k, v in self.info.items()},
        )

    def to(self, device: torch.device | str) -> Pathway:
        return dataclasses.replace(self, masks=[m.to(device) for m in self.masks], sparsity=self.sparsity.to(device))

    @staticmethod
    def cat(paths: Sequence[Pathway]) -> Pathway:
        """Concatenate the images of several pathways over the same sites."""
        if not paths:
            raise ValueError("paths must contain at least one Pathway")
        first = paths[0]
        if any(p.sites != first.sites for p in paths):
            raise ValueError("pathways to concatenate must have the same sites")
        for p in paths:
            _check_info(p.info, p.batch_size)  # info may have changed since construction
        criteria = sorted({p.criterion for p in paths})
        if len(criteria) > 1:
            raise ValueError(f"pathways to concatenate must come from one criterion, got {criteria}")
        # per-image entries are concatenated, shared ones kept; an entry that is neither in every
        # pathway (missing somewhere, per-image in one and shared in another, or shared but different) is left out
        info: dict[str, Any] = {}
        for key, value in first.info.items():
            values = [p.info.get(key, _MISSING) for p in paths]
            if all(_is_batched(v, p.batch_size) for v, p in zip(values, paths)):
                info[key] = torch.cat([v.to(value.device) for v in values])
            elif not any(isinstance(v, torch.Tensor) for v in values) and all(_same_value(v, value) for v in values):
                info[key] = value
        return Pathway(
            [torch.cat([p.masks[s] for p in paths]) for s in range(len(first.sites))],
            list(first.sites),
            torch.cat([p.sparsity for p in paths]),
            first.criterion,
            info,
        )

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Multiply every rectifier output of ``model`` by this pathway's mask inside the block.

        The masks broadcast over the batch when the pathway holds one image. An in-place ``nn.ReLU``
        or ``nn.ReLU6`` module has its removed neurons zeroed in its input instead (:class:`Masking`):
        the same outputs and gradients, and, as for an in-place functional call, every use of that
        tensor sees the mask. The hooks are removed on exit, also when the body raises.
        """

        def check_count(trace: Trace) -> None:
            if len(trace.calls) != len(self.masks):
                raise ValueError(
                    f"the model made {len(trace.calls)} rectifier calls but this pathway has {len(self.masks)} "
                    "sites: the pathway was extracted from a different model"
                )

        edit = Masking(self.masks, self.sites)
        with hooked(model, edit, keep_outputs=False, on_end=check_count, before=edit.zero_removed_inputs):
            yield


class Masking:
    """Each rectifier output multiplied by its pathway mask: a :func:`~pathlib_pw.sites.hooked` edit.

    Called as the edit, it returns the output times a float copy of the mask (a mask with one image
    broadcasts over the batch; a site count or shape that does not match the model raises
    ValueError). Passed as ``before`` too (:meth:`zero_removed_inputs`), it zeroes the input of an
    in-place ``nn.ReLU``/``nn.ReLU6`` module where the mask removes a neuron, before the module
    overwrites that input anyway: the rectifier's output is then already masked, and its own backward
    passes no gradient through a zero, so neither pass makes a product tensor or a float copy of the
    mask. Both give the same outputs and gradients for every finite pre-activation; a removed neuron
    is exactly zero here also where the product gives NaN (infinity or NaN times zero). The tensor
    is edited, not a copy: like an in-place functional call (:mod:`pathlib_pw.sites`), any other use
    of the rectifier's output in the model sees the mask too.
    """

    def __init__(self, masks: Sequence[torch.Tensor], sites: Sequence[str]) -> None:
        self.masks, self.sites = masks, sites
        self.float_masks: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        self.buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def mask(self, index: int, activation: torch.Tensor) -> torch.Tensor:
        """Site ``index``'s mask, checked against the activation it masks (ValueError if it does not fit)."""
        if index >= len(self.masks):
            raise ValueError(
                f"the model has more rectifier calls than this pathway has sites ({len(self.masks)}): "
                "the pathway was extracted from a different model"
            )
        mask = self.masks[index]
        if tuple(mask.shape[1:]) != tuple(activation.shape[1:]) or mask.shape[0] not in (1, activation.shape[0]):
            raise ValueError(
                f"pathway site {self.sites[index]!r} has mask shape {tuple(mask.shape)} but the rectifier "
                f"output has shape {tuple(activation.shape)}: use the input size and batch the pathway was "
                "extracted with (or a one-image pathway, which broadcasts)"
            )
        return mask

    def __call__(self, index: int, output: torch.Tensor) -> torch.Tensor:
        self.mask(index, output)
        key = (output.device, output.dtype)
        if key not in self.float_masks:
            # a product with a float mask: torch.where, masked_fill and the boolean mask itself are slower on the CPU
            # (optimization log)
            self.float_masks[key] = float_copies(self.masks, output.device, output.dtype)
        return output * self.float_masks[key][index]

    def zero_removed_inputs(self, index: int, x: torch.Tensor) -> bool:
        """Zero ``x``, the input of site ``index``'s in-place rectifier, where its mask removes a neuron;
        False (nothing done, the output gets the product) for a tensor this cannot edit in place."""
        mask = self.mask(index, x)
        if (
            mask.dtype != torch.bool
            or mask.device != x.device
            or x.dtype not in _SAME_SIZE_INTEGER
            or not (x.is_contiguous() and mask.is_contiguous())
            or x._is_view()
            or (x.is_leaf and x.requires_grad)
            or type(x) is not torch.Tensor  # a subclass may not keep plain bits
            or fwAD.unpack_dual(x).tangent is not None  # forward-mode AD: the product masks the tangent too
        ):
            return False
        # on the CPU a cache-sized step; elsewhere one step per tensor (each step is a few kernel launches)
        size = _CHUNK if x.device.type == "cpu" else x.numel()
        key = (x.device, x.dtype)
        if key not in self.buffers or self.buffers[key].numel() < size:
            self.buffers[key] = torch.empty(size, device=x.device, dtype=_SAME_SIZE_INTEGER[x.dtype])
        _ZeroRemoved.apply(x, mask, self.buffers[key][:size])
        return True


def taylor_scores(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor | int | None = None,
    masks: Sequence[torch.Tensor] | None = None,
    sites: Sequence[str] = (),
) -> tuple[list[torch.Tensor], list[str], torch.Tensor]:
    """``|a x d logit / d a|`` of every neuron through the network masked by ``masks`` (one per site,
    named ``sites``; the whole network when None), with the site names and the explained class.

    Greedy's score in each round (Khakzar et al., CVPR 2021, section 3), and the decoding chapter's
    ranking of a Greedy path's neurons by the score its next round would use. The masks are applied
    as :meth:`Pathway.applied` applies them."""
    edit = None if masks is None else Masking(masks, sites)
    before = None if edit is None else edit.zero_removed_inputs
    _, acts, grads, names, tgt = activations_and_gradients(model, x, target, edit, before)
    return [(a * g).abs() for a, g in zip(acts, grads)], names, tgt


# a float dtype -> the integer dtype of its size: a removed neuron's bits are ANDed with 0, a kept one's with all ones
_SAME_SIZE_INTEGER = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}
# elements per step on the CPU: one step's integer mask stays in the cache, and no site-sized float copy is made
_CHUNK = 1 << 20


def zero_removed_(x: torch.Tensor, keep: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """``x`` with every element where ``keep`` is False set to +0, in place, exactly (bits ANDed with 0,
    whatever the value); ``keep`` has x's shape or one image that broadcasts over x's batch, both
    contiguous; ``buffer`` is a 1-d integer tensor of x's element size, whose length sets the step."""
    bits = x.view(x.shape[0], -1).view(buffer.dtype)
    rows = keep.view(keep.shape[0], -1).view(torch.uint8)
    if rows.shape[0] == bits.shape[0]:
        bits, rows = bits.view(1, -1), rows.view(1, -1)
    step = buffer.numel()
    for b in range(bits.shape[0]):
        row, flags = bits[b], rows[0 if rows.shape[0] == 1 else b]
        for start in range(0, row.numel(), step):
            end = min(row.numel(), start + step)
            row[start:end].bitwise_and_(buffer[: end - start].copy_(flags[start:end]).neg_())
    return x


class _ZeroRemoved(torch.autograd.Function):
    """:func:`zero_removed_` with the gradient passed through unchanged: for the input of a ReLU or
    ReLU6 only, whose backward passes nothing where its (saved) input or output is zero."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
        ctx.mark_dirty(x)
        return zero_removed_(x, keep, buffer)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return grads[0], None, None


def float_copies(masks: Sequence[torch.Tensor], device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
    """The masks as tensors of ``dtype`` on ``device``; a boolean mask converted from its bytes (twice
    as fast as from bool on the CPU; torch's comparisons and conversions give bytes 0 and 1 only)."""
    return [
        torch.empty(m.shape, device=device, dtype=dtype).copy_(m.view(torch.uint8) if m.dtype == torch.bool else m) for m in masks
    ]


def _same_tensor(a: object, b: object) -> bool:
    """Two tensors of the same shape and dtype with equal values, NaN equal to NaN (on the CPU)."""
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return False
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    a, b = a.detach().cpu(), b.detach().cpu()
    if torch.equal(a, b):
        return True
    return a.is_floating_point() and bool(((a == b) | (a.isnan() & b.isnan())).all())


def _same_value(a: object, b: object) -> bool:
    """Equality of info values: tensors by :func:`_same_tensor`, containers item by item (a tuple equals
    the list :meth:`Pathway.load` makes of it), NaN equal to NaN, others by ``==``."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return _same_tensor(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(u, v) for u, v in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError, RuntimeError):  # e.g. numpy arrays: elementwise ==
        return False


_MISSING = object()


def _is_batched(value: Any, batch: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == batch


def _check_info(info: dict[str, Any], batch: int) -> None:
    """A ValueError naming the first tensor in ``info`` with a dimension but not ``batch`` rows: it
    would be kept whole where the masks are indexed, for images it does not describe."""
    for key, value in info.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] != batch:
            raise ValueError(
                f"info[{key!r}] has shape {tuple(value.shape)}, but a tensor in info is per image and must have "
                f"{batch} rows (the batch size); pass a value shared by all images as a plain value or a 0-d tensor"
            )


def realized_sparsity(masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Percent of removed neurons per image, shape (B,)."""
    return sparsity_of_kept(add_all(count_true(m) for m in masks), sum(m[0].numel() for m in masks))


def sparsity_of_kept(kept: torch.Tensor, total: int) -> torch.Tensor:
    """Percent of removed neurons per image, (B,) float32, from the kept neurons' counts (B,) out of ``total``."""
    return (100.0 * (1.0 - kept.to(torch.float64) / total)).float()
