"""Threshold decisions, recorded and replayed: cached results that can be checked on any machine.

Every mask in pathlib_pw comes out of a threshold decision: per image, scores in, keep-mask out
(:func:`pathlib_pw.thresholds.global_threshold`, :func:`~pathlib_pw.thresholds.remove_lowest`). Float sums
differ between CPUs, thread counts, batch splits and GPUs; a neuron whose score sits near the cut may
land on the other side, and in an iterative criterion (Greedy's 99 rounds) one changed neuron changes
every later round. A cached result can therefore not be recomputed bit for bit on another machine,
and a plain tolerance on the final numbers either fails there or hides real changes.

Under :func:`recording`, each decision about the recorded images is summarized per image: the kept
count per site, the cut, and an invertible sketch of the kept set (an invertible Bloom lookup table;
Goodrich and Mitzenmacher 2011) a few kilobytes in size. Under :func:`replaying`, a recomputation's
decisions are compared with those records: the neurons that differ are recovered exactly from the
two sketches; at most the criterion's ``capacity`` may differ, each with a score within its ``band``
of the cut (:class:`Rounding`); then the recorded mask is restored, so that everything downstream
(the next Greedy round, maps, output changes, overlaps) runs on the recorded masks and can be compared
with tight tolerances. A criterion whose masks rounding reshuffles beyond repair (DGR with gates
starting at 1, whose gates barely separate) is ``"chaotic"``: its kept set is compared by an estimated
overlap and not restored, and the numbers derived from it get tolerances derived from that overlap.

Decisions are keyed by ``scope | image | ordinal``: experiments name the images of a batch
(:func:`images`, e.g. their index in the experiment) and the part of the computation (:func:`scope`,
e.g. the criterion or the randomization stage), so a replay may batch the images differently.

The package's parts: :mod:`~pathlib_pw.decisions.sketches` (the invertible sketch and the MinHash
signature), :mod:`~pathlib_pw.decisions.records` (records, their log and its file, the replay's report),
:mod:`~pathlib_pw.decisions.session` (the active recording or replay, image keys, scopes and the
:class:`Rounding` of a criterion) and :mod:`~pathlib_pw.decisions.hook` (:func:`checkpoint`, the hook in
the threshold functions). Everything is used through this package (``decisions.checkpoint(...)``, so that
the attribute is looked up at call time).
"""

from __future__ import annotations

from pathlib_pw.decisions.hook import checkpoint
from pathlib_pw.decisions.records import Check, DecisionLog, ReplayReport
from pathlib_pw.decisions.records import Record as Record
from pathlib_pw.decisions.session import EXACT, Rounding, criterion, images, recording, replaying, rows, scope, widened
from pathlib_pw.decisions.session import MIN_CHANGES as MIN_CHANGES
from pathlib_pw.decisions.sketches import Sketch
from pathlib_pw.decisions.sketches import difference as difference
from pathlib_pw.decisions.sketches import minhash as minhash
from pathlib_pw.decisions.sketches import overlap_estimate as overlap_estimate
from pathlib_pw.decisions.sketches import sketch as sketch

__all__ = [
    "EXACT",
    "Check",
    "DecisionLog",
    "ReplayReport",
    "Rounding",
    "Sketch",
    "checkpoint",
    "criterion",
    "images",
    "recording",
    "replaying",
    "rows",
    "scope",
    "widened",
]
