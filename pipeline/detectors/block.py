"""Detector states of many series keys at once: the fleet's hot path.

A fleet of sensors polled every second brings one new sample per key per
poll.  Feeding each key's :class:`~pipeline.detectors.base.DetectorState`
costs tens of microseconds of Python per key and detector whatever the
number of samples, so 10,000 keys x 3 detectors would fill a core.  A
*block* holds the streaming state of one detector for many keys as arrays
(keys x state) and updates every key of a read in a few numpy calls.

A block gives the per-key states' numbers **to the bit**, however the
samples are chunked (``tests/test_block.py`` pins it):

* flat line and the alarm hold: the per-key formulas, segmented over keys
  (run starts and last hits are carried forward within each key only);
* drift (an EWMA residual over the scale learned at fit): the recurrence
  column by column (the j-th new sample of every key at once), in the
  floating-point order of ``scipy.signal.lfilter``, and the streak minimum
  over a tail of ``|long_z|`` per key;
* z-score: each key's samples are cut into exactly the blocks the per-key
  kernel would score (:func:`pipeline.zscore_kernel._blocked`, whose blocks are
  independent of each other), and all keys' blocks are scored in one call;
* the streak guard: column by column.

Keys with many new samples in one update (a backfill, a key catching up)
run through their per-key state when that is cheaper; keys whose chunk
holds a non-finite value or one beyond ``config.Z_MAX_ABS`` always do
(the flat line excepted: its formula takes them as NaN).  Any detector without a block of its
own gets a :class:`GenericBlock`: a list of per-key states.

An update takes the points of several keys at once, sorted by key:
``rows`` (the block row of each key, unique), ``starts`` (offsets of each
key's points, ``len(rows) + 1`` of them) and ``times``/``values``, ascending
in time within each key.

Where the parts live: the interface and what every block shares
(:class:`Block`, :class:`BlockOutput`, the segmented alarm hold) in
:mod:`pipeline.detectors.block_base`; the flat line's block in
:mod:`pipeline.detectors.block_flatline`; the z-score's and the drift's in
:mod:`pipeline.detectors.block_zscores`.  This module holds
:class:`GenericBlock` and :func:`make_block`, which picks a detector's block.
"""

from __future__ import annotations

import numpy as np

from .block_base import Block, BlockOutput
from .block_flatline import FlatLineBlock
from .block_zscores import DriftBlock, ZScoreBlock
from .flatline import FlatLineDetector
from .zscores import DriftDetector, ZScoreDetector

__all__ = ["Block", "BlockOutput", "GenericBlock", "make_block"]


# --------------------------------------------------------------------------
# any detector: one per-key state per row
# --------------------------------------------------------------------------
class GenericBlock(Block):
    """Per-key states in a list: any detector, one ``update_many`` per key."""

    per_sample = False

    def __init__(self, det, n=0):
        self.states = []
        self.per_sample = bool(det.per_sample)
        super().__init__(det, n)

    def _init_arrays(self):
        pass

    def grow(self, n):
        while len(self.states) < n:
            self.states.append(self.det.new_state())
        self.n = max(self.n, n)

    def reset_rows(self, rows):
        for i in np.asarray(rows, np.int64).tolist():
            self.states[i] = self.det.new_state()

    def row_state(self, i):
        st = self.det.new_state()
        st.set_data(*self.states[i].get_data())
        return st

    def set_row(self, i, st):
        self.states[i] = self.det.new_state()
        self.states[i].set_data(*st.get_data())

    def get_data(self):
        metas, arrays = [], {}
        for i, st in enumerate(self.states):
            meta, arr = st.get_data()
            metas.append(meta)
            arrays.update({f"{i}.{k}": a for k, a in arr.items()})
        return {"rows": metas}, arrays

    def set_data(self, meta, arrays, n):
        rows = meta.get("rows")
        if not isinstance(rows, list) or len(rows) != n:
            raise ValueError(f"{self.det.name} block: {n} row states expected")
        self.states = []
        for i, m in enumerate(rows):
            pre = f"{i}."
            st = self.det.new_state()
            st.set_data(m, {k[len(pre):]: a for k, a in arrays.items() if k.startswith(pre)})
            self.states.append(st)
        self.n = n

    def update(self, rows, starts, times, values):
        t = np.asarray(times, np.int64)
        v = np.asarray(values, np.float64)
        outs, gaps, skipped = [], [], 0
        for j, r in enumerate(np.asarray(rows, np.int64).tolist()):
            st = self.states[r]
            before = getattr(st, "n_skipped_samples", 0)
            o = st.update_many(t[starts[j]:starts[j + 1]], v[starts[j]:starts[j + 1]])
            skipped += getattr(st, "n_skipped_samples", 0) - before
            g = getattr(st, "gaps", None)
            if g:
                gaps.append((r, list(g)))
            outs.append(o)
        lens = [len(o) for o in outs]
        ostarts = np.concatenate(([0], np.cumsum(lens))).astype(np.int64)
        extra = {}
        for k in (outs[0].extra if outs else {}):
            extra[k] = _cat([o.extra[k] for o in outs], np.float64)
        return BlockOutput(self.det, np.asarray(rows, np.int64), ostarts,
                           _cat([o.times for o in outs], np.int64),
                           _cat([o.score for o in outs], np.float64),
                           _cat([o.alarm for o in outs], bool), self.det.threshold_, extra,
                           gaps, skipped)


def _cat(xs, dtype):
    return np.concatenate(xs) if xs else np.empty(0, dtype)


_BLOCKS = {ZScoreDetector: ZScoreBlock, DriftDetector: DriftBlock,
           FlatLineDetector: FlatLineBlock}
"""Detectors with a vectorized block; any other uses :class:`GenericBlock`."""


def make_block(det, n: int = 0) -> Block:
    """The block of ``det`` for ``n`` keys: vectorized for the detectors that have one; a
    cross-key detector's state is a block of the whole fleet already."""
    if getattr(det, "cross_key", False):
        blk = det.new_state()
        blk.grow(n)
        return blk
    kind = _BLOCKS.get(type(det))
    return kind(det, n) if kind is not None else GenericBlock(det, n)
