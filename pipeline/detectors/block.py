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
  kernel would score (:func:`pipeline.zscore._blocked`, whose blocks are
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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import config
from ..checks import _usable
from ..series import GAP_FACTOR
from ..streak import ZScoreBatch, _above_limit
from ..zscore_kernel import _EPS, _TOL, _block_sums, _direct, _refine
from .base import DetectorOutput
from .flatline import FlatLineDetector, _as_usable
from .zscores import DriftDetector, ZScoreDetector

__all__ = ["Block", "BlockOutput", "GenericBlock", "make_block"]

_NONE = np.iinfo(np.int64).min
"""Stands for ``None`` in int64 state arrays (a last hit, a run start)."""
_JOBS = 1024
"""z-score blocks scored per :func:`pipeline.zscore._blocked` call (bounds the temporaries)."""


@dataclass
class BlockOutput:
    """One detector's output for every key of an update.

    ``starts`` holds, for each key of the update (in its order), the offset
    of its first output point: key ``j`` owns points ``starts[j]:starts[j+1]``.
    Per-sample detectors have one output point per input point.
    """

    detector: object
    rows: np.ndarray
    starts: np.ndarray
    times: np.ndarray
    score: np.ndarray
    alarm: np.ndarray
    threshold: float
    extra: dict = field(default_factory=dict)
    gaps: list = field(default_factory=list)
    """``(row, [Gap, ...])`` for the keys where the detector found breaks."""
    skipped: int = 0
    """Samples the detector skipped at breaks in this update (all keys)."""
    late: int = 0
    """Samples a cross-key detector did not score: their time bin had been scored already
    (their key came more than its wait after the others)."""

    def __len__(self) -> int:
        return len(self.times)

    def fields(self, diagnostics: bool = False) -> dict:
        """The fields to write, under the detector's field names (all keys), exactly as
        :meth:`DetectorOutput.fields` gives them for one key."""
        return DetectorOutput(self.detector, self.times, self.score, self.alarm, self.threshold,
                              self.extra).fields(diagnostics)

    def key_output(self, j: int) -> DetectorOutput:
        """The :class:`DetectorOutput` of the ``j``-th key of the update."""
        a, b = int(self.starts[j]), int(self.starts[j + 1])
        return DetectorOutput(self.detector, self.times[a:b], self.score[a:b], self.alarm[a:b],
                              self.threshold, {k: v[a:b] for k, v in self.extra.items()})


class Block:
    """Streaming state of one detector for ``n`` keys (rows)."""

    per_sample = True

    def __init__(self, det, n: int = 0):
        self.det = det
        self.n = 0
        self._init_arrays()
        self.grow(n)

    # -- rows -------------------------------------------------------------
    def _init_arrays(self) -> None:
        self.last_hit = np.empty(0, np.int64)

    def _fresh(self, n: int) -> dict:
        """Arrays of ``n`` fresh rows, by attribute name."""
        return {"last_hit": np.full(n, _NONE, np.int64)}

    def grow(self, n: int) -> None:
        """Make the block ``n`` rows long; new rows are fresh states."""
        if n <= self.n:
            return
        for name, arr in self._fresh(n - self.n).items():
            setattr(self, name, np.concatenate([getattr(self, name), arr]))
        self.n = n

    def reset_rows(self, rows) -> None:
        """Fresh states for ``rows`` (a key whose state cannot be trusted any more)."""
        rows = np.asarray(rows, np.int64)
        for name, arr in self._fresh(len(rows)).items():
            getattr(self, name)[rows] = arr

    def row_state(self, i: int):
        """A per-key :class:`DetectorState` equal to row ``i``."""
        raise NotImplementedError

    def set_row(self, i: int, st) -> None:
        """Make row ``i`` equal to the per-key state ``st``."""
        raise NotImplementedError

    def set_keys(self, keys) -> None:
        """The key name of each row (a block that compares keys learns them per name; the
        others need not know)."""

    def finish(self) -> BlockOutput:
        """What the block held back, at the end of the data: nothing, unless it waits for the
        other keys (the fleet detector's open time bins)."""
        e = np.empty(0, np.int64)
        return BlockOutput(self.det, e, np.zeros(1, np.int64), e, np.empty(0),
                           np.empty(0, bool), self.det.threshold_)

    # -- data -------------------------------------------------------------
    def get_data(self) -> tuple[dict, dict]:
        return {}, {name: getattr(self, name) for name in self._fresh(0)}

    def set_data(self, meta: dict, arrays: dict, n: int) -> None:
        fresh = self._fresh(n)
        for name, like in fresh.items():
            a = arrays.get(name)
            if a is None or a.shape != like.shape or a.dtype != like.dtype:
                raise ValueError(f"{self.det.name} block: array {name!r} missing or not "
                                 f"{like.dtype} {like.shape}")
            setattr(self, name, np.array(a))
        self.n = n

    # -- update -----------------------------------------------------------
    def update(self, rows, starts, times, values) -> BlockOutput:
        rows = np.asarray(rows, np.int64)
        starts = np.asarray(starts, np.int64)
        t = np.asarray(times, np.int64)
        v = np.asarray(values, np.float64)
        lengths = np.diff(starts)
        slow = self._slow_groups(lengths, v, starts)
        n = len(t)
        score = np.empty(n)
        alarm = np.empty(n, bool)
        extra = {k: np.empty(n, dt) for k, dt in self._extra_dtypes().items()}
        if slow.any():
            for j in np.flatnonzero(slow).tolist():
                a, b = int(starts[j]), int(starts[j + 1])
                st = self.row_state(int(rows[j]))
                o = st.update_many(t[a:b], v[a:b])
                self.set_row(int(rows[j]), st)
                score[a:b], alarm[a:b] = o.score, o.alarm
                for k in extra:
                    extra[k][a:b] = o.extra[k]
        fast = ~slow
        if fast.any():
            if slow.any():
                pm = np.repeat(fast, lengths)
                fl = lengths[fast]
                fs = np.concatenate(([0], np.cumsum(fl)))
                sc, al, ex = self._update_fast(rows[fast], fs, t[pm], v[pm])
                score[pm], alarm[pm] = sc, al
                for k in extra:
                    extra[k][pm] = ex[k]
            else:
                score, alarm, extra = self._update_fast(rows, starts, t, v)
        return BlockOutput(self.det, rows, starts, t, score, alarm, self.det.threshold_, extra)

    def _extra_dtypes(self) -> dict:
        return {}

    def _slow_groups(self, lengths, v, starts) -> np.ndarray:
        """Keys that go through their per-key state: those with a non-finite value or one
        beyond ``Z_MAX_ABS``, and the longest ones when a per-key update is cheaper than more
        columns for everyone."""
        slow = np.zeros(len(lengths), bool)
        ok = _usable(v)
        if len(v) and not ok.all():
            bad = np.add.reduceat(~ok, starts[:-1]) > 0
            slow |= bad & (lengths > 0)
        return slow | _longest(lengths, self._column_cost)

    _column_cost = 1.0
    """Cost of one column (all keys) relative to one per-key update."""

    def _update_fast(self, rows, starts, t, v):
        raise NotImplementedError

    # -- the alarm hold, segmented over keys --------------------------------
    def _hold(self, rows, starts, t, raw) -> np.ndarray:
        """:func:`~pipeline.detectors.base.hold_alarm` of every key, carrying ``last_hit``."""
        n = len(t)
        first = starts[:-1]
        is_start = np.zeros(n, bool)
        is_start[first] = True
        idx = np.where(raw | is_start, np.arange(n), -1)
        fill = np.maximum.accumulate(idx)
        gid = np.repeat(np.arange(len(rows)), np.diff(starts))
        carry = self.last_hit[rows][gid]
        last_t = np.where(raw[fill], t[fill], carry)
        has = last_t != _NONE
        alarm = has & (t - np.where(has, last_t, t) <= self.det.hold_ns())
        last = starts[1:] - 1
        self.last_hit[rows] = last_t[last]
        return alarm


def _longest(lengths, column_cost: float) -> np.ndarray:
    """The keys to update one by one so that ``k + column_cost * (longest other)`` is least."""
    g = len(lengths)
    out = np.zeros(g, bool)
    if g == 0:
        return out
    order = np.argsort(-lengths, kind="stable")
    ms = np.append(lengths[order], 0)
    k = int(np.argmin(np.arange(g + 1) + column_cost * ms))
    out[order[:k]] = True
    return out


def _n_longer(ls_desc, c) -> int:
    """Number of entries of a descending array that are > c."""
    return int(np.searchsorted(-ls_desc, -c, side="left"))


def _columns(starts):
    """Walk ragged per-key segments ``[starts[i], starts[i+1])`` column by column.

    Yields ``(c, keys, p)``: the keys (indices into the segments, longest first) that have a
    ``c``-th sample, and where those samples are.  A recurrence then runs vectorized over keys
    and sequentially over time.
    """
    lengths = np.diff(starts)
    order = np.argsort(-lengths, kind="stable")
    ls = lengths[order]
    st0 = starts[:-1][order]
    for c in range(int(ls[0]) if len(ls) else 0):
        m = _n_longer(ls, c)
        yield c, order[:m], st0[:m] + c


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
# flat line
# --------------------------------------------------------------------------
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

    # the per-key kernel (pipeline.zscore._kernel_body), cut into its blocks for all keys
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
        """:func:`pipeline.zscore._span`'s blocks of window starts ``s0 <= s < s1``."""
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
    """:func:`pipeline.zscore._blocked` of each row of ``ext`` on its own; only the first
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
