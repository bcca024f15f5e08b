"""The z-score and drift detectors' blocks: many keys' rolling z-score and drift states as arrays.

* z-score (:class:`ZScoreBlock`): each key's samples are cut into exactly the blocks the per-key
  kernel would score (:func:`pipeline.zscore_kernel._blocked`, whose blocks are independent of
  each other), and all keys' blocks are scored in one call (:func:`_blocked_rows`); the streak
  guard runs column by column.
* drift (:class:`DriftBlock`, an EWMA residual over the scale learned at fit): the recurrence
  column by column, in the floating-point order of ``scipy.signal.lfilter``, and the streak
  minimum over a tail of ``|long_z|`` per key.

Both give the per-key states' numbers to the bit (``tests/test_block.py``);
:func:`pipeline.detectors.block.make_block` picks them.

Examples
--------
>>> _ranges([2, 0, 3]).tolist()
[0, 1, 0, 1, 2]
"""

from __future__ import annotations

import numpy as np

from .. import config
from ..streak import ZScoreBatch, _above_limit
from ..zscore_kernel import _EPS, _TOL, _block_sums, _direct, _refine
from .block_base import _NONE, Block, _columns

__all__ = ["DriftBlock", "ZScoreBlock"]

_JOBS = 1024
"""z-score blocks scored per :func:`pipeline.zscore_kernel._blocked` call (bounds the temporaries)."""


class _GuardMixin:
    """The streak guard with hysteresis, column by column (the rows' streak/alert carried)."""

    def _extra_dtypes(self):
        e = np.empty(0)
        probe = self.det._extra(ZScoreBatch(e, np.empty(0, np.int64), np.empty(0, bool), e))
        return {k: np.asarray(v).dtype for k, v in probe.items()}

    def _guard_columns(self, rows, starts, z):
        n = len(z)
        streak = np.zeros(n, np.int64)
        alert = np.zeros(n, bool)
        thr, res, k = self._thr, self._res, self._k
        cur_s = self.streak[rows].copy()
        cur_a = self.alert[rows].copy()
        for _, keys, p in _columns(starts):
            az = np.abs(z[p])
            hit = az > thr
            s = np.where(hit, cur_s[keys] + 1, 0)
            a = np.where(hit, cur_a[keys] | (s >= k), cur_a[keys] & (az > res))
            cur_s[keys], cur_a[keys] = s, a
            streak[p], alert[p] = s, a
        self.streak[rows], self.alert[rows] = cur_s, cur_a
        return streak, alert


# --------------------------------------------------------------------------
# drift: residual from an EWMA, in units of the scale learned at fit
# --------------------------------------------------------------------------
class DriftBlock(Block):
    """Drift states of many keys (:class:`~pipeline.detectors.zscores.DriftState`).

    Row state: the EWMA (``count``, ``ref``, ``md``; count 0 is "nothing
    seen"), the last ``streak - 1`` values of ``|long_z|`` (``tail``, the
    newest last, ``n_tail`` of them valid) and the last hit.  The recurrence
    runs column by column in ``scipy.signal.lfilter``'s order
    (``md = c * md + alpha * d``).
    """

    _column_cost = 0.5

    def __init__(self, det, n=0):
        self._k = max(0, det.streak_ - 1)
        self._alpha = det._alpha()
        self._warm = det._warm()
        self._scale = det._scale()
        self._kept = _tail_lengths(det, self._k)
        super().__init__(det, n)

    def _init_arrays(self):
        for name, arr in self._fresh(0).items():
            setattr(self, name, arr)

    def _fresh(self, n):
        return {"last_hit": np.full(n, _NONE, np.int64), "count": np.zeros(n, np.int64),
                "ref": np.zeros(n), "md": np.zeros(n), "tail": np.zeros((n, self._k)),
                "n_tail": np.zeros(n, np.int64)}

    def row_state(self, i):
        st = self.det.new_state()
        c = int(self.count[i])
        st.ewma = None if c == 0 else [c, float(self.ref[i]), float(self.md[i])]
        st.tail = self.tail[i, self._k - int(self.n_tail[i]):].tolist()
        st.last_hit = None if self.last_hit[i] == _NONE else int(self.last_hit[i])
        return st

    def set_row(self, i, st):
        e = st.ewma
        self.count[i], self.ref[i], self.md[i] = (0, 0.0, 0.0) if e is None else e
        tail = np.asarray(st.tail, np.float64)
        if len(tail) > self._k:
            raise ValueError("drift state: the streak tail is longer than streak - 1")
        self.n_tail[i] = len(tail)
        self.tail[i] = 0.0
        if len(tail):
            self.tail[i, self._k - len(tail):] = tail
        self.last_hit[i] = _NONE if st.last_hit is None else st.last_hit

    def _update_fast(self, rows, starts, t, v):
        n = len(t)
        z = np.full(n, np.nan)
        stat = np.zeros(n)
        a, k = self._alpha, self._k
        c = 1.0 - a
        count, ref, md = self.count[rows], self.ref[rows], self.md[rows]
        tail, t0 = self.tail[rows], self.n_tail[rows]
        for col, keys, p in _columns(starts):
            x = v[p]
            n0 = count[keys]
            new = n0 == 0
            r0 = np.where(new, x, ref[keys])
            md0 = md[keys]
            d = x - r0
            with np.errstate(invalid="ignore"):
                zc = np.where(new | (n0 < self._warm), np.nan, (d - md0) / self._scale)
            z[p] = zc
            ref[keys] = r0
            md[keys] = np.where(new, 0.0, c * md0 + a * d)
            count[keys] = n0 + 1
            az = np.nan_to_num(np.abs(zc), nan=0.0)
            if k:  # the window of streak values ends here once k values precede it
                tk = tail[keys]
                stat[p] = np.where(t0[keys] + col >= k, np.minimum(tk.min(axis=1), az), 0.0)
                tk[:, :-1] = tk[:, 1:]
                tk[:, -1] = az
                tail[keys] = tk
            else:
                stat[p] = az
        self.count[rows], self.ref[rows], self.md[rows] = count, ref, md
        self.tail[rows] = tail
        # as many values as the per-key state keeps after holding L in all (see _tail_lengths)
        L = t0 + np.diff(starts)
        self.n_tail[rows] = self._kept[np.minimum(L, len(self._kept) - 1)] if k else 0
        raw = stat > self.det.threshold_
        return z, self._hold(rows, starts, t, raw), {}


def _tail_lengths(det, k: int) -> np.ndarray:
    """How many streak values a fresh per-key drift state keeps after ``L`` samples, for
    ``L = 0 .. 2k + 1`` (the last entry holds for every longer ``L``).

    Asked of the per-key state itself, so the block keeps what it keeps.  (At the time of
    writing it keeps ``both[len(both) - k:]``, a negative start below ``k``: fed one sample at
    a time it keeps 4 of 9 values for good and a streak of 10 never alarms.)
    """
    out = np.zeros(2 * k + 2, np.int64)
    for L in range(1, len(out)):
        st = det.new_state()
        st.update_many(np.arange(L, dtype=np.int64), np.zeros(L))
        out[L] = len(st.tail)
    return out


# --------------------------------------------------------------------------
# z-score: rolling window
# --------------------------------------------------------------------------
class ZScoreBlock(_GuardMixin, Block):
    """Rolling z-score states of many keys (:class:`~pipeline.detectors.zscores.ZScoreState`).

    Row state: the last ``window + lag`` finite values (``ring``, oldest
    first, ``count`` of them valid), the streak, the alert and the last hit,
    which is all a per-key state's ``update_many`` reads.
    """

    _column_cost = 0.3

    def __init__(self, det, n=0):
        inner = det._make()
        self._w, self._lag, self._minp = inner.window, inner.lag, inner.min_periods
        self._floor = inner.std_floor
        self._g = self._w + self._lag
        self._B = max(128, self._w)
        self._thr, self._res, self._k = _above_limit(inner.threshold), _above_limit(
            inner.resolve), inner.streak
        super().__init__(det, n)

    def _init_arrays(self):
        for name, arr in self._fresh(0).items():
            setattr(self, name, arr)

    def _fresh(self, n):
        return {"last_hit": np.full(n, _NONE, np.int64), "ring": np.zeros((n, self._g)),
                "count": np.zeros(n, np.int64), "streak": np.zeros(n, np.int64),
                "alert": np.zeros(n, bool)}

    def row_state(self, i):
        st = self.det.new_state()
        L = int(self.count[i])
        st.inner._set_state(self.ring[i, :L].tolist(), int(self.streak[i]), bool(self.alert[i]))
        st.last_hit = None if self.last_hit[i] == _NONE else int(self.last_hit[i])
        return st

    def set_row(self, i, st):
        inn = st.inner
        ring = inn._ring()
        if len(ring) > self._g:
            raise ValueError("z-score state holds more values than window + lag")
        self.count[i] = len(ring)
        self.ring[i, :len(ring)] = ring
        self.ring[i, len(ring):] = 0.0
        self.streak[i], self.alert[i] = inn._streak, inn._alert
        self.last_hit[i] = _NONE if st.last_hit is None else st.last_hit

    def _update_fast(self, rows, starts, t, v):
        z = self._z(rows, starts, v)
        streak, alert = self._guard_columns(rows, starts, z)
        emitted = np.where(alert, np.abs(z), 0.0)
        extra = self.det._extra(ZScoreBatch(z, streak, alert, emitted))
        return z, self._hold(rows, starts, t, alert), extra

    # the per-key kernel (pipeline.zscore_kernel._kernel_body), cut into its blocks for all keys
    def _z(self, rows, starts, v):
        g, B, w, lag = self._g, self._B, self._w, self._lag
        n = len(v)
        z = np.full(n, np.nan)
        lengths = np.diff(starts)
        L = self.count[rows]
        common = (L == g) & (lengths <= min(g, B))
        jobs_src, jobs_pos, jobs_len = [], [], []  # (B+g) arrays, first output point, outputs
        direct = []  # (gh, i, count, point)
        if common.any():
            cr = np.flatnonzero(common)
            m = lengths[cr]
            mat = np.empty((len(cr), B + g))
            mat[:, :g] = self.ring[rows[cr]]
            col = np.arange(B)
            src_idx = starts[cr][:, None] + np.minimum(col[None, :], m[:, None] - 1)
            mat[:, g:] = v[src_idx]
            jobs_src.append(mat)
            jobs_pos.append(starts[cr])
            jobs_len.append(m)
            # the new ring: the last g values of ring + new
            take = m[:, None] + np.arange(g)[None, :]
            self.ring[rows[cr]] = np.take_along_axis(mat, take, axis=1)
        for j in np.flatnonzero(~common).tolist():
            self._jobs_one(int(rows[j]), v[starts[j]:starts[j + 1]], int(starts[j]),
                           jobs_src, jobs_pos, jobs_len, direct)
        if jobs_src:
            self._score_jobs(np.concatenate(jobs_src) if len(jobs_src) > 1 else jobs_src[0],
                             np.concatenate(jobs_pos), np.concatenate(jobs_len), z)
        if direct:
            srcs, off, st_, cnt, pts = [], 0, [], [], []
            for gh, i, cnt_i, pt in direct:
                srcs.append(gh)
                st_.append(off + np.asarray(i))
                cnt.append(np.asarray(cnt_i))
                pts.append(np.asarray(pt))
                off += len(gh)
            with np.errstate(divide="ignore", invalid="ignore"):
                z[np.concatenate(pts)] = _direct(np.concatenate(srcs), np.concatenate(st_),
                                                 np.concatenate(cnt), w, lag, self._floor)
        return z

    def _jobs_one(self, row, f, p0, jobs_src, jobs_pos, jobs_len, direct):
        """The blocks of one key whose ring is not full or whose chunk is long."""
        g, w, lag = self._g, self._w, self._lag
        L0 = int(self.count[row])
        buf = self.ring[row, :L0]
        F = len(f)
        nh = min(F, g)
        pad = g - L0
        gh = np.empty(g + nh)
        gh[pad:g] = buf
        gh[g:] = f[:nh]
        gh[:pad] = gh[pad]
        full0 = min(nh, pad)
        if full0:
            i = np.arange(full0)
            counts = np.clip(L0 + i - lag, 0, w)
            ok = counts >= self._minp
            if ok.any():
                direct.append((gh, i[ok], counts[ok], p0 + i[ok]))
        if full0 < nh:
            self._span(gh, full0, nh, p0 + full0, jobs_src, jobs_pos, jobs_len)
        if F > g:
            self._span(f, 0, F - g, p0 + g, jobs_src, jobs_pos, jobs_len)
        keep = np.concatenate([buf, f])[-g:]
        self.count[row] = len(keep)
        self.ring[row, :len(keep)] = keep
        self.ring[row, len(keep):] = 0.0

    def _span(self, src, s0, s1, p0, jobs_src, jobs_pos, jobs_len):
        """:func:`pipeline.zscore_kernel._span`'s blocks of window starts ``s0 <= s < s1``."""
        g, B = self._g, self._B
        nfull = (s1 - s0) // B
        if nfull:
            view = np.lib.stride_tricks.sliding_window_view(src, B + g)[s0:s0 + nfull * B:B]
            jobs_src.append(view)
            jobs_pos.append(p0 + np.arange(nfull) * B)
            jobs_len.append(np.full(nfull, B))
        rest = (s1 - s0) - nfull * B
        if rest:
            a = s0 + nfull * B
            tail = np.empty((1, B + g))
            tail[0, :rest + g] = src[a:s1 + g]
            tail[0, rest + g:] = src[s1 + g - 1]
            jobs_src.append(tail)
            jobs_pos.append(np.array([p0 + nfull * B]))
            jobs_len.append(np.array([rest]))

    def _score_jobs(self, mat, pos, nout, z):
        """Score the first ``nout`` windows of every (B+g)-block of ``mat`` into ``z[pos:]``."""
        for a in range(0, len(mat), _JOBS):
            m = np.ascontiguousarray(mat[a:a + _JOBS])
            cnt = nout[a:a + len(m)]
            with np.errstate(divide="ignore", invalid="ignore"):
                zb = _blocked_rows(m, cnt, self._w, self._lag, self._floor)
            within = _ranges(cnt)
            z[np.repeat(pos[a:a + len(m)], cnt) + within] = \
                zb[np.repeat(np.arange(len(m)), cnt), within]


def _blocked_rows(ext, nused, w, lag, std_floor):
    """:func:`pipeline.zscore_kernel._blocked` of each row of ``ext`` on its own; only the first
    ``nused[b]`` outputs of row ``b`` are exact (the others are left as computed).

    The same operations in the same order as ``_blocked`` called with that one
    block, which is how the per-key kernel scores it: the block's reference and
    prefix sums, its screen, and for the windows the screen flags the error
    bound, the floor and the exact two-pass fallback.  The flagged windows that
    no one reads (the padding after the new samples) are not recomputed.
    """
    nb, width = ext.shape
    B = width - w - lag
    K = B + w
    ref, p1, p2, tot, md, num, m2 = _block_sums(ext, w, lag)
    c2 = 2.0 * _EPS * (K + 2)
    mdm = np.maximum(md.max(axis=1), -md.min(axis=1))
    # the screen of _blocked called with this block alone
    e1 = c2 * np.sqrt(K * tot)
    e2 = c2 * tot + 2.0 * mdm * e1
    fl = std_floor + config.EPS_STD * np.maximum(1.0, np.abs(ref) + mdm)
    lim = np.maximum(np.maximum(e2 / (_TOL * (w - 1)), np.square(e1 / (w * _TOL))), fl * fl)
    lim *= w - 1
    screen = ~(m2.min(axis=1) >= lim)
    cand = None
    if screen.any():  # again per block, with each block's actual max |P1| and max |md|
        e1b = c2 * np.maximum(p1.max(axis=1), -p1.min(axis=1))
        e2b = c2 * tot + 2.0 * mdm * e1b
        limb = np.maximum(np.maximum(e2b / (_TOL * (w - 1)), (e1b / (w * _TOL)) ** 2), fl * fl)
        cand = ~(m2 >= (limb * (w - 1))[:, None])
        cand &= screen[:, None] & (np.arange(B)[None, :] < np.asarray(nused)[:, None])
    m2 *= 1.0 / (w - 1)
    s = np.sqrt(m2, out=m2)
    zb = num / s
    if cand is None or not cand.any():
        return zb
    _refine(zb, num, s, cand, p1, p2, md, ref, c2, w, lag, std_floor, ext.ravel(), 0, width)
    return zb


def _ranges(lengths) -> np.ndarray:
    """``concatenate([arange(k) for k in lengths])``, vectorized."""
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    ends = np.cumsum(lengths)
    return np.arange(total, dtype=np.int64) - np.repeat(ends - lengths, lengths)
