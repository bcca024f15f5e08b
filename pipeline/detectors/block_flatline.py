"""The flat-line detector's block: many keys' flat-line states as arrays.

The per-key formula (:class:`~pipeline.detectors.flatline.FlatLineState`) segmented over keys:
run starts and last hits are carried forward within each key only, and a value that is NaN or
beyond ``config.Z_MAX_ABS`` is taken as NaN, as the formula takes it, so no key ever goes
through its per-key state.  :func:`pipeline.detectors.block.make_block` picks it.
"""

from __future__ import annotations

import numpy as np

from ..series import GAP_FACTOR
from .block_base import _NONE, Block
from .flatline import _as_usable

__all__ = ["FlatLineBlock"]


class FlatLineBlock(Block):
    """Flat-line states of many keys (:class:`~pipeline.detectors.flatline.FlatLineState`)."""

    _column_cost = 0.0  # fully vectorized: never per key

    def _init_arrays(self):
        for name, arr in self._fresh(0).items():
            setattr(self, name, arr)

    def _fresh(self, n):
        return {"last_hit": np.full(n, _NONE, np.int64), "has_carry": np.zeros(n, bool),
                "run_start": np.full(n, _NONE, np.int64), "last_t": np.zeros(n, np.int64),
                "last_v": np.full(n, np.nan)}

    def row_state(self, i):
        st = self.det.new_state()
        if self.has_carry[i]:
            rs = int(self.run_start[i])
            st.carry = (None if rs == _NONE else rs, int(self.last_t[i]), float(self.last_v[i]))
        st.last_hit = None if self.last_hit[i] == _NONE else int(self.last_hit[i])
        return st

    def set_row(self, i, st):
        c = st.carry
        self.has_carry[i] = c is not None
        if c is not None:
            self.run_start[i] = _NONE if c[0] is None else c[0]
            self.last_t[i], self.last_v[i] = c[1], c[2]
        else:
            self.run_start[i], self.last_t[i], self.last_v[i] = _NONE, 0, np.nan
        self.last_hit[i] = _NONE if st.last_hit is None else st.last_hit

    def _slow_groups(self, lengths, v, starts):
        return np.zeros(len(lengths), bool)  # NaN is handled like the per-key formula

    def _update_fast(self, rows, starts, t, v):
        d = self.det
        v = _as_usable(v)  # beyond Z_MAX_ABS: NaN, as flat_runs does
        n = len(t)
        first = starts[:-1]
        last = starts[1:] - 1
        gid = np.repeat(np.arange(len(rows)), np.diff(starts))
        has = self.has_carry[rows]
        prev_t = np.empty(n, np.int64)
        prev_v = np.empty(n)
        prev_t[1:], prev_v[1:] = t[:-1], v[:-1]
        prev_t[first] = np.where(has, self.last_t[rows], t[first])
        prev_v[first] = np.where(has, self.last_v[rows], np.nan)
        with np.errstate(invalid="ignore"):
            cont = ((np.abs(v - prev_v) <= d.tol_) & (t - prev_t < GAP_FACTOR * d.period_ns_)
                    & np.isfinite(v))
        cont[first] &= has & (self.run_start[rows] != _NONE)
        is_start = np.zeros(n, bool)
        is_start[first] = True
        fill = np.maximum.accumulate(np.where(~cont | is_start, np.arange(n), -1))
        starts_t = np.where(cont[fill], self.run_start[rows][gid], t[fill])
        flat = (t - starts_t) / 1e9
        finite = np.isfinite(v)
        flat[~finite] = np.nan
        self.has_carry[rows] = True
        self.run_start[rows] = np.where(finite[last], starts_t[last], _NONE)
        self.last_t[rows], self.last_v[rows] = t[last], v[last]
        with np.errstate(invalid="ignore"):
            raw = flat > d.threshold_
        return flat, self._hold(rows, starts, t, raw), {}
