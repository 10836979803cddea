"""What a recording holds and what a replay reports: one :class:`Record` per decision and image, a
:class:`DecisionLog` of them by key (saved as ``decisions.npz`` beside a cached result and loaded back),
and the :class:`Check` of each replayed decision gathered in a :class:`ReplayReport`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pathlib_pw.decisions.sketches import Sketch


@dataclasses.dataclass
class Record:
    """One decision about one image, as recorded."""

    kind: str
    neurons: int
    kept: int
    site_kept: np.ndarray
    cut: float
    complement: bool  # the sketch holds the removed neurons (fewer than the kept ones)
    sketch: Sketch | None  # None for chaotic decisions
    signature: np.ndarray  # minhash for chaotic, else empty


@dataclasses.dataclass
class DecisionLog:
    """Recorded decisions by key ``scope|image|ordinal``; saved beside a cached result."""

    records: dict[str, Record] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, keys: Sequence[str]) -> DecisionLog:
        return DecisionLog({k: self.records[k] for k in keys if k in self.records})

    def save(self, path: Path) -> None:
        keys = list(self.records)
        recs = [self.records[k] for k in keys]
        empty = Sketch(np.zeros(0, np.uint8), np.zeros(0, np.uint32), np.zeros(0, np.uint16))
        sketches = [r.sketch or empty for r in recs]

        def ragged(arrays: list[np.ndarray], dtype: type) -> tuple[np.ndarray, np.ndarray]:
            flat: np.ndarray = (
                np.concatenate([np.asarray(a).reshape(-1) for a in arrays]).astype(dtype) if arrays else np.zeros(0, dtype)
            )
            return flat, np.cumsum([0] + [np.asarray(a).size for a in arrays])

        site_kept, site_offsets = ragged([r.site_kept for r in recs], np.int64)
        count, cell_offsets = ragged([k.count for k in sketches], np.uint8)
        cell_keys, _ = ragged([k.keys for k in sketches], np.uint32)
        checks, _ = ragged([k.checks for k in sketches], np.uint16)
        signatures, signature_offsets = ragged([r.signature for r in recs], np.uint32)
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                keys=np.array(keys, dtype=str),
                kind=np.array([r.kind for r in recs], dtype=str),
                neurons=np.array([r.neurons for r in recs], dtype=np.int64),
                kept=np.array([r.kept for r in recs], dtype=np.int64),
                cut=np.array([r.cut for r in recs], dtype=np.float64),
                complement=np.array([r.complement for r in recs], dtype=bool),
                site_kept=site_kept,
                site_offsets=site_offsets,
                cell_count=count,
                cell_keys=cell_keys,
                cell_checks=checks,
                cell_offsets=cell_offsets,
                signatures=signatures,
                signature_offsets=signature_offsets,
            )

    @classmethod
    def load(cls, path: Path) -> DecisionLog:
        with np.load(path) as d:
            data = {k: d[k] for k in d.files}
        records = {}

        def part(values: str, offsets: str, i: int) -> np.ndarray:
            return data[values][data[offsets][i] : data[offsets][i + 1]]

        for i, key in enumerate(data["keys"].tolist()):
            count = part("cell_count", "cell_offsets", i)
            records[key] = Record(
                kind=str(data["kind"][i]),
                neurons=int(data["neurons"][i]),
                kept=int(data["kept"][i]),
                site_kept=part("site_kept", "site_offsets", i),
                cut=float(data["cut"][i]),
                complement=bool(data["complement"][i]),
                sketch=Sketch(count, part("cell_keys", "cell_offsets", i), part("cell_checks", "cell_offsets", i))
                if count.size
                else None,
                signature=part("signatures", "signature_offsets", i),
            )
        return cls(records)


@dataclasses.dataclass
class Check:
    """The outcome of one replayed decision."""

    key: str
    kind: str
    changed: int = 0  # neurons whose recomputed decision differs from the recorded one
    allowed: int = 0
    worst_band: float = 0.0  # the largest |score - cut| / scale among the changed neurons
    band: float = 0.0
    overlap: float | None = None  # chaotic: estimated Jaccard of recomputed and recorded kept sets
    overlap_low: float | None = None  # ... minus three standard errors
    restored: bool = True  # the recorded mask was restored
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclasses.dataclass
class ReplayReport:
    """What a replay saw: one :class:`Check` per decision, and the recorded decisions it never met."""

    checks: list[Check] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)
    unused: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unused and all(c.ok for c in self.checks)

    @property
    def changed(self) -> int:
        """Neurons changed by rounding and restored to the recorded decision, all decisions together."""
        return sum(c.changed for c in self.checks if c.kind != "chaotic" and c.changed > 0)

    def problems(self) -> list[str]:
        out = [f"{c.key}: {c.problem}" for c in self.checks if c.problem]
        out += [
            f"{k}: no recorded decision (the cache holds records for other images or parts; an experiment numbers its "
            f"images from config.inputs.offset in decisions.images)"
            for k in self.missing
        ]
        out += [f"{k}: recorded but not made by the recomputation" for k in self.unused]
        return out

    def chaotic(self) -> dict[str, Check]:
        return {c.key: c for c in self.checks if c.kind == "chaotic"}
