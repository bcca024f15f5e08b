"""The fleet detector's streaming state: the whole fleet's EWMAs, pending bins and streaks.

:class:`FleetState` is one state for every key of a fleet, with the block interface of
:mod:`pipeline.detectors.block_base` (``update(rows, starts, times, values)``, ``finish()``).
It smooths each key's readings, holds them until their time bin is complete and scores a
complete bin with :func:`_relative_z`: each key against the bin's offset-corrected median, in
units of its learned scale or the bin's own spread.  The rules (time alignment, late and missing
readings) are in :mod:`pipeline.detectors.fleet`, with :class:`~pipeline.detectors.fleet.FleetDetector`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import config
from .base import DetectorOutput
from .block_base import _NONE, Block, BlockOutput, _columns

__all__ = ["FleetState"]

_MAD = 1.4826
"""Scales a median absolute deviation to a standard deviation (normal data)."""


class FleetState(Block):
    """Streaming state of a :class:`~pipeline.detectors.fleet.FleetDetector` for a whole fleet (``n`` keys as rows).

    Per row: the EWMA (``count``, ``m``), the newest reading's time (``last_t``),
    the last alarm hit and the last ``streak - 1`` bins' ``|z|`` (``tail``,
    oldest first, for the bins up to ``cur_bin``).  For the fleet: the
    readings waiting for their bin to be scored (``p_row``, ``p_bin``, ``p_t``,
    ``p_m``: one per key and bin, the last), ``cur_bin`` (the last bin
    scored), ``newest`` and ``n_late``.
    """

    per_sample = True

    def __init__(self, det, n: int = 0, threshold: float | None = None):
        self._k = det.streak - 1
        self._thr = det.threshold_ if threshold is None else threshold
        self.cur_bin = _NONE
        self.newest = _NONE
        self.n_late = 0
        self.p_row = np.empty(0, np.int64)
        self.p_bin = np.empty(0, np.int64)
        self.p_t = np.empty(0, np.int64)
        self.p_m = np.empty(0)
        super().__init__(det, n)

    # -- rows -------------------------------------------------------------
    def _init_arrays(self):
        for name, arr in self._fresh(0).items():
            setattr(self, name, arr)
        self.off, self.scl = self.det.relation([])

    def grow(self, n):
        """Make the fleet ``n`` keys long; new rows are unknown keys until :meth:`set_keys`."""
        m = n - self.n
        super().grow(n)
        if m > 0:
            off, scl = self.det.relation([None] * m)
            self.off, self.scl = np.concatenate([self.off, off]), np.concatenate([self.scl, scl])

    def set_keys(self, keys) -> None:
        """Name the rows (their offsets and scales are the model's for these keys)."""
        keys = list(keys)
        if len(keys) > self.n:
            self.grow(len(keys))
        off, scl = self.det.relation(keys)
        self.off[:len(keys)], self.scl[:len(keys)] = off, scl

    def _fresh(self, n):
        return {"last_hit": np.full(n, _NONE, np.int64), "count": np.zeros(n, np.int64),
                "m": np.zeros(n), "last_t": np.full(n, _NONE, np.int64),
                "tail": np.zeros((n, self._k))}

    def reset_rows(self, rows) -> None:
        super().reset_rows(rows)
        drop = np.isin(self.p_row, np.asarray(rows, np.int64))
        self._keep_pending(~drop)

    def row_state(self, i):
        raise ValueError("the fleet detector keeps one state for the whole fleet, not per key")

    def set_row(self, i, st):
        raise ValueError("the fleet detector keeps one state for the whole fleet, not per key")

    def _keep_pending(self, mask):
        self.p_row, self.p_bin = self.p_row[mask], self.p_bin[mask]
        self.p_t, self.p_m = self.p_t[mask], self.p_m[mask]

    # -- data -------------------------------------------------------------
    def get_data(self):
        arrays = {name: getattr(self, name) for name in self._fresh(0)}
        arrays.update(p_row=self.p_row, p_bin=self.p_bin, p_t=self.p_t, p_m=self.p_m)
        return ({"cur_bin": int(self.cur_bin), "newest": int(self.newest),
                 "n_late": int(self.n_late)}, arrays)

    def set_data(self, meta, arrays, n=None):
        """Restore :meth:`get_data` (``n``: the number of rows expected)."""
        if n is None:
            n = len(arrays.get("count", ()))
        super().set_data(meta, arrays, n)
        self.off, self.scl = self.det.relation([None] * n)  # until set_keys
        p = {}
        for name, dt in (("p_row", np.int64), ("p_bin", np.int64), ("p_t", np.int64),
                         ("p_m", np.float64)):
            a = arrays.get(name)
            if a is None or a.dtype != dt or a.ndim != 1:
                raise ValueError(f"fleet block: array {name!r} missing or not 1-D {np.dtype(dt)}")
            p[name] = np.array(a)
        if len({len(a) for a in p.values()}) != 1 or (len(p["p_row"]) and not (
                (p["p_row"] >= 0).all() and (p["p_row"] < n).all())):
            raise ValueError("fleet block: the pending readings do not fit the fleet")
        for name, a in p.items():
            setattr(self, name, a)
        self.cur_bin, self.newest = int(meta["cur_bin"]), int(meta["newest"])
        self.n_late = int(meta["n_late"])

    # -- update -----------------------------------------------------------
    def update(self, rows, starts, times, values) -> BlockOutput:
        """Absorb the readings of some keys (sorted by key, ascending in time within each);
        return the output of every bin that became complete (any keys)."""
        before = self.n_late
        res = self._scored(rows, starts, times, values)
        return self._output(res, self.n_late - before)

    def finish(self) -> BlockOutput:
        """Score every bin still waiting (the end of the data: nothing will come for them)."""
        e = np.empty(0, np.int64)
        return self._output(self._scored(e, np.zeros(1, np.int64), e, np.empty(0), True), 0)

    def update_many(self, times_ns, values) -> DetectorOutput:
        """One key alone (row 0): a fleet of one, NaN throughout, never an alarm."""
        self.grow(1)
        t = np.asarray(times_ns, np.int64)
        o = self.update(np.zeros(1, np.int64), np.array([0, len(t)]), t, values)
        return DetectorOutput(self.det, o.times, o.score, o.alarm, o.threshold)

    def _output(self, res, late) -> BlockOutput:
        rows, bounds, times, z, stat = res
        with np.errstate(invalid="ignore"):
            raw = stat > self._thr
        alarm = self._hold(rows, bounds, times, raw) if len(rows) else np.zeros(0, bool)
        return BlockOutput(self.det, rows, bounds, times, z, alarm, self._thr, {}, late=late)

    def _scored(self, rows, starts, times, values, finish=False):
        """Absorb, then score the bins that are complete: ``(rows, bounds, times, z, stat)``
        sorted by row, then bin (row ``rows[j]`` owns ``bounds[j]:bounds[j+1]``)."""
        d = self.det
        rows = np.asarray(rows, np.int64)
        starts = np.asarray(starts, np.int64)
        t = np.asarray(times, np.int64)
        v = np.asarray(values, np.float64)
        if len(t):
            with np.errstate(invalid="ignore"):
                out = ~(np.abs(v) <= config.Z_MAX_ABS)
            if out.any():  # NaN, inf and beyond 1e100: a missing reading (docs/extremes.md)
                v = np.where(out, np.nan, v)
            lengths = np.diff(starts)
            m = self._absorb(rows, starts, v)
            has = lengths > 0
            last = starts[1:][has] - 1
            self.last_t[rows[has]] = np.maximum(self.last_t[rows[has]], t[last])
            self.newest = max(self.newest, int(t.max()))
            prow = np.repeat(rows, lengths)
            b = d.bins(t)
            fin = np.isfinite(v)
            late = fin & (b <= self.cur_bin)
            self.n_late += int(np.count_nonzero(late))
            keep = fin & ~late
            self._add_pending(prow[keep], b[keep], t[keep], m[keep])
        if finish:
            upto = int(self.p_bin.max()) + 1 if len(self.p_bin) else None
        else:
            upto = self._closable()
        if upto is None or (self.cur_bin != _NONE and upto <= self.cur_bin + 1):
            e = np.empty(0, np.int64)
            return e, np.zeros(1, np.int64), e, np.empty(0), np.empty(0)
        return self._close(upto)

    def _absorb(self, rows, starts, v) -> np.ndarray:
        """Each reading's EWMA after it (NaN while warming up or for a non-finite value)."""
        a, warm = self.det._alpha(), self.det._warm()
        out = np.full(len(v), np.nan)
        count, m = self.count[rows], self.m[rows]
        for _, keys, p in _columns(starts):
            x = v[p]
            fin = np.isfinite(x)
            n0 = count[keys]
            mm = m[keys]
            with np.errstate(invalid="ignore"):
                new = np.where(n0 == 0, x, mm + a * (x - mm))
            new = np.where(fin, new, mm)
            m[keys] = new
            count[keys] = n0 + fin
            out[p] = np.where(fin & (n0 >= warm), new, np.nan)
        self.count[rows], self.m[rows] = count, m
        return out

    def _add_pending(self, r, b, t, m):
        if not len(r):
            return
        R = np.concatenate([self.p_row, r])
        B = np.concatenate([self.p_bin, b])
        T = np.concatenate([self.p_t, t])
        M = np.concatenate([self.p_m, m])
        order = np.lexsort((np.arange(len(R)), R, B))
        R, B, T, M = R[order], B[order], T[order], M[order]
        last = np.ones(len(R), bool)  # the last reading of a key in a bin stands for it
        last[:-1] = (R[1:] != R[:-1]) | (B[1:] != B[:-1])
        self.p_row, self.p_bin, self.p_t, self.p_m = R[last], B[last], T[last], M[last]

    def _closable(self) -> int | None:
        """Bins below the returned one are complete (``None``: nothing yet)."""
        if self.newest == _NONE:
            return None
        lim = self.newest - self.det.wait_ns()
        if self.n and (self.last_t != _NONE).all():
            lim = max(lim, int(self.last_t.min()))
        return int(self.det.bins([lim])[0])

    def _z(self, U, M):
        return _relative_z(M, self.off, self.scl, self.det.min_keys, self.det.std_floor_)

    def _close(self, upto: int):
        n, k = self.n, self._k
        sel = self.p_bin < upto
        r, b, tt, mm = self.p_row[sel], self.p_bin[sel], self.p_t[sel], self.p_m[sel]
        self._keep_pending(~sel)
        cur = self.cur_bin if self.cur_bin != _NONE else (
            (int(b.min()) if len(b) else upto) - 1)
        U, pos = np.unique(b, return_inverse=True)
        M = np.full((len(U), n), np.nan)
        M[pos, r] = mm
        Z = self._z(U, M)
        A = np.abs(np.nan_to_num(Z, nan=0.0))
        if k:
            bins_ext = np.concatenate([np.arange(cur - k + 1, cur + 1), U])
            A_ext = np.concatenate([self.tail.T, A])
            W = A_ext[k:].copy()
            for j in range(1, k + 1):
                np.minimum(W, A_ext[k - j:len(A_ext) - j], out=W)
            whole = (bins_ext[k:] - bins_ext[:-k]) == k
            S = np.where(whole[:, None], W, 0.0)
            new_cur = upto - 1
            want = np.arange(new_cur - k + 1, new_cur + 1)
            at = np.searchsorted(bins_ext, want)
            found = (at < len(bins_ext)) & (bins_ext[np.minimum(at, len(bins_ext) - 1)] == want)
            tail = np.zeros((k, n))
            tail[found] = A_ext[at[found]]
            self.tail = np.ascontiguousarray(tail.T)
        else:
            S = A
        self.cur_bin = upto - 1
        z, stat = Z[pos, r], S[pos, r]
        order = np.lexsort((b, r))
        r, tt, z, stat = r[order], tt[order], z[order], stat[order]
        if not len(r):
            e = np.empty(0, np.int64)
            return e, np.zeros(1, np.int64), e, np.empty(0), np.empty(0)
        brk = np.flatnonzero(r[1:] != r[:-1]) + 1
        bounds = np.concatenate(([0], brk, [len(r)])).astype(np.int64)
        return r[bounds[:-1]], bounds, tt, z, stat


def _relative_z(M, off, scl, min_keys: int, std_floor: float) -> np.ndarray:
    """z of every cell of ``M`` (bins x keys, NaN missing) against its key's relation.

    ``(x - off - median) / max(scl, 1.4826 * MAD, std_floor + EPS_STD * max(1, |median|))``
    with ``median`` and ``MAD`` those of the row's offset-corrected values ``x - off``; rows with fewer than ``min_keys``
    finite values are NaN.  Medians by sorting (NaN sorts last), so a row's numbers do not
    depend on the other rows.

    >>> M = np.array([[1.0, 12.0, 3.0, np.nan], [1.0, np.nan, 2.0, np.nan]])
    >>> _relative_z(M, np.array([0.0, 10.0, 0.0, 0.0]), np.full(4, 2.0), 3, 0.0)
    array([[-0.5,  0. ,  0.5,  nan],
           [ nan,  nan,  nan,  nan]])
    """
    c = np.count_nonzero(np.isfinite(M), axis=1)
    ok = c >= min_keys
    Z = np.full(M.shape, np.nan)
    if not ok.any():
        return Z
    X, c = M[ok] - off, c[ok]
    med = _median_rows(X, c)
    dev = X - med[:, None]
    spread = _MAD * _median_rows(np.abs(dev), c)  # the bin's own: wide when many keys move
    floor = np.maximum(spread, std_floor + config.EPS_STD * np.maximum(1.0, np.abs(med)))
    Z[ok] = dev / np.maximum(scl[None, :], floor[:, None])
    return Z


class _Collector(FleetState):
    """The smoothed values of every run per bin (bins x runs), for :meth:`FleetDetector.fit`."""

    def __init__(self, det, n):
        super().__init__(det, n, threshold=math.inf)
        self._k = 0
        self.tail = np.zeros((n, 0))
        self._got = []

    def _z(self, U, M):
        self._got.append((U, M))
        return np.full(M.shape, np.nan)

    def matrix(self, runs):
        starts = np.concatenate(([0], np.cumsum([len(r[0]) for r in runs]))).astype(np.int64)
        t = np.concatenate([np.asarray(r[0], np.int64) for r in runs])
        v = np.concatenate([np.asarray(r[1], np.float64) for r in runs])
        self._scored(np.arange(len(runs)), starts, t, v, finish=True)
        if not self._got:
            return np.empty(0, np.int64), np.empty((0, len(runs)))
        return (np.concatenate([u for u, _ in self._got]),
                np.concatenate([m for _, m in self._got]))


def _median_rows(X, c) -> np.ndarray:
    """The median of the ``c[i]`` finite values of each row (NaN elsewhere in the row)."""
    s = np.sort(X, axis=1)
    i = np.arange(len(s))
    return (s[i, (c - 1) // 2] + s[i, c // 2]) / 2
