"""Fleet baseline: each sensor against the rest of its fleet at the same time.

A building's daily cycle and its weather are common to every sensor and
cancel when a sensor is compared with the others; what is left is small and
stationary, so a drift, a slow slide or a sensor that is off from the start
stands out, none of which a per-sensor baseline sees well (its baseline
moves with the fault, or starts there)::

    m_k     = EWMA of key k's readings (half-life halflife_s)
    z_k(b)  = (m_k - median_j m_j) / max(1.4826 * MAD_j m_j, floor)   # over the keys in bin b
    alarm   when min |z_k| over the last ``streak`` bins > threshold    # then held, as every one

Time alignment.  Keys are binned on the model's sample-period grid (its
phase learned at fit: bins are centred on where the training readings
fall); a reading belongs to the bin its time falls in, a key's last reading
in a bin stands for it there.  A bin is *scored* when every key has
reported past it, or when the newest reading of any key is more than
``wait`` past its end (``max(wait_s, 3 periods)``), so a dead sensor
delays the fleet by ``wait`` and never stalls it.  A reading for a bin
already scored (a key more than ``wait`` behind the others) still moves its
key's EWMA, but is not scored: it is counted (``n_late``, the block
output's ``late``, the stream's late points).  A reading that is NaN, inf or beyond
``config.Z_MAX_ABS`` (1e100) is missing (``docs/extremes.md``): it reports its key's time
but is not smoothed or scored.  A bin with fewer than ``min_keys`` finite smoothed
values scores NaN (never an alarm); so does a key's reading while its EWMA
warms up (the first ``ceil(half-life in samples)`` readings), and a key
without a reading in a bin has no output there and breaks its streak.

Output: one point per key and bin in which it reported, at the time of its
last reading there (so the fields join that reading's per-sample point),
after the bin is scored: ``fleet_z``, ``fleet_threshold`` (on alarm
points), ``fleet_alert``.

The detector is *cross-key* (``cross_key = True``): its streaming state,
:class:`FleetState`, is one for the whole fleet and has the block interface
of :mod:`pipeline.detectors.block` (``update(rows, starts, times,
values)``): the stream's :class:`~pipeline.fleet.Fleet` gives it every key
of a read at once.  Whatever the chunking, as long as no reading comes more
than ``wait`` after the newest one, its output equals one update with all
the data followed by :meth:`FleetState.finish` (``tests/test_fleet_detector.py``
compares both with a slow reference in ``tests/naive.py``).
"""

from __future__ import annotations

import math

import numpy as np

from .. import config
from .base import Detector, DetectorOutput, default_hold_ns, register
from .block import Block, BlockOutput, _columns
from .flatline import resolution

__all__ = ["FleetDetector", "FleetState"]

_NONE = np.iinfo(np.int64).min
_MAD = 1.4826


@register
class FleetDetector(Detector):
    """Robust z of each key's smoothed value across the fleet's keys at the same time.

    Parameters
    ----------
    halflife_s : float, default=600
        Half-life of each key's EWMA in seconds (converted to readings at fit).
    streak : int, default=30
        Bins ``|z|`` must stay above the threshold (the smallest of the last
        ``streak`` is compared).
    wait_s : float, default=10
        A bin is scored at the latest this long (and at least 3 sample
        periods) after its end, in data time, even if some key has not
        reported past it.
    min_keys : int, default=3
        Keys with a finite smoothed value a bin needs to be scored.
    std_floor : float or None, default=None
        Floor of the fleet's spread; ``None`` learns half the data's resolution.

    Examples
    --------
    Nine sensors sharing a daily cycle; one drifts away from the others:

    >>> rng = np.random.default_rng(0)
    >>> n, K = 20000, 9
    >>> t = np.arange(n, dtype=np.int64) * 2 * 10**9                   # every 2 s
    >>> common = 2 * np.sin(np.arange(n) / 3000.0)
    >>> x = [20 + common + 0.05 * rng.standard_normal(n) for k in range(K)]
    >>> det = FleetDetector(halflife_s=120).fit([(t[:8000], v[:8000]) for v in x], 2e9)
    >>> det = det.calibrate([(t[:14000], v[:14000]) for v in x], 2e9, 1 / 24)
    >>> x[2] = x[2] + np.clip((np.arange(n) - 16000) / 1500, 0, None)   # +1 per 50 min
    >>> st = det.new_state()
    >>> st.grow(K)
    >>> out = st.update(np.arange(K), np.arange(K + 1) * 6000, np.tile(t[14000:], K),
    ...                 np.concatenate([v[14000:] for v in x]))
    >>> alarmed = np.repeat(out.rows, np.diff(out.starts))[out.alarm]
    >>> sorted(set(alarmed.tolist())), float(out.times[out.alarm].min() / 1e9 - 32000)
    ([2], 226.0)
    """

    name = "fleet"
    label = "fleet"
    per_sample = True
    cross_key = True
    score_field = "fleet_z"
    threshold_field = "fleet_threshold"
    alarm_field = "fleet_alert"
    calibrate_on_training = True
    """It learns the grid's phase and a floor; its alarms come from the slow part of normal data
    (the fleet's daily differences), which a short held-out range does not cover."""

    def __init__(self, halflife_s=600.0, streak=30, wait_s=10.0, min_keys=3, std_floor=None):
        self.halflife_s = halflife_s
        self.streak = streak
        self.wait_s = wait_s
        self.min_keys = min_keys
        self.std_floor = std_floor

    # -- fit --------------------------------------------------------------
    def _check(self):
        def num(name, lo, hi):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < v <= hi:
                raise ValueError(f"{name} must be a number in ({lo:g}, {hi:g}], got {v!r}")
        num("halflife_s", 0, 86400 * 365)
        num("wait_s", 0, 86400)
        for name, lo, hi in (("streak", 1, 100000), ("min_keys", 3, 10**9)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if self.std_floor is not None and not (
                isinstance(self.std_floor, (int, float)) and 0 <= self.std_floor < math.inf):
            raise ValueError(f"std_floor must be a number >= 0 or None, got {self.std_floor!r}")

    def fit(self, runs, period_ns: float) -> FleetDetector:
        """Learn the bin grid's phase and the spread's floor.  ``runs`` are the runs of every
        key (several per key after gaps): each is a column of the fleet where it has data."""
        self._check()
        if not (isinstance(period_ns, (int, float)) and period_ns >= 1):
            raise ValueError(f"period_ns must be >= 1 ns, got {period_ns!r}")
        self.period_ns_ = float(period_ns)
        p = self._p()
        t = np.concatenate([np.asarray(r[0], np.int64)[:100000] for r in runs]) if runs \
            else np.empty(0, np.int64)
        if len(t):
            ang = 2 * np.pi * (t % p).astype(np.float64) / p
            self.phase_ns_ = int(round(math.atan2(np.sin(ang).mean(), np.cos(ang).mean())
                                       / (2 * np.pi) * p)) % p
        else:
            self.phase_ns_ = 0
        self.std_floor_ = (float(self.std_floor) if self.std_floor is not None
                           else 0.5 * resolution(runs))
        return self

    def _p(self) -> int:
        return max(1, int(round(self.period_ns_)))

    def _halflife(self) -> float:
        return max(1.0, self.halflife_s * 1e9 / self.period_ns_)

    def _alpha(self) -> float:
        return 1.0 - 2.0 ** (-1.0 / self._halflife())

    def _warm(self) -> int:
        return int(np.ceil(self._halflife()))

    def wait_ns(self) -> int:
        """How long after a bin's end (data time) it is scored at the latest."""
        return max(int(self.wait_s * 1e9), 3 * self._p())

    def bins(self, times_ns) -> np.ndarray:
        """The bin of each time: bins are one period wide, centred on the learned phase.

        >>> d = FleetDetector(); d.period_ns_, d.phase_ns_ = 10.0, 0
        >>> d.bins([-5, -1, 0, 4, 5, 14, 15]).tolist()
        [0, 0, 0, 0, 1, 1, 2]
        """
        p = self._p()
        return (np.asarray(times_ns, np.int64) - self.phase_ns_ + p // 2) // p

    def bin_end(self, b) -> int:
        """The first time after bin ``b``."""
        p = self._p()
        return self.phase_ns_ - p // 2 + (int(b) + 1) * p

    def hold_ns(self, period_ns=None):
        """A tenth of the half-life (1 min at 10 min), at least the default (as the drift's)."""
        return max(default_hold_ns(period_ns or self.period_ns_ or 1e9),
                   int(self.halflife_s * 1e8))

    def decluster_ns(self, period_ns=None):
        """An excursion of a smoothed value lasts about a half-life: one peak for the tail."""
        return max(self.hold_ns(period_ns), int(self.halflife_s * 1e9))

    # -- calibration --------------------------------------------------------
    def calibration_scores(self, times_ns, values):
        raise ValueError("the fleet detector scores keys against each other: calibrate it on "
                         "all the fleet's runs at once (calibrate(runs, ...))")

    def run_stats(self, runs) -> list:
        """``[(times, z, stat), ...]`` per run, every run a key of one fleet, all scored."""
        st = FleetState(self, len(runs), threshold=math.inf)
        lengths = [len(r[0]) for r in runs]
        starts = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        t = np.concatenate([np.asarray(r[0], np.int64) for r in runs]) if runs else \
            np.empty(0, np.int64)
        v = np.concatenate([np.asarray(r[1], np.float64) for r in runs]) if runs else \
            np.empty(0)
        res = st._scored(np.arange(len(runs)), starts, t, v, finish=True)
        rows, bounds, times, z, stat = res
        out = [(np.empty(0, np.int64), np.empty(0), np.empty(0)) for _ in runs]
        for j, r in enumerate(rows.tolist()):
            a, b = int(bounds[j]), int(bounds[j + 1])
            out[r] = (times[a:b], z[a:b], stat[a:b])
        return out

    def calibrate(self, runs, period_ns, budget) -> FleetDetector:
        """Set the threshold on the fleet's runs (all keys at once) to ``budget`` per key."""
        from ..calibrate import calibrate_threshold

        stats = self.run_stats(runs)
        n_out = sum(len(s[1]) for s in stats)
        scored = sum(int(np.count_nonzero(np.isfinite(s[1]))) for s in stats)
        if scored < max(1, 0.5 * n_out):
            self.enabled_, self.threshold_ = False, 0.0  # off: a number for the model file
            most = _most_keys(self, runs)
            self.calibration_ = {"why_off": (
                f"it compares at least {self.min_keys} keys reporting at the same time, and "
                f"{100 * scored / max(1, n_out):.0f} % of the readings had them (at most {most} "
                "keys at once); train it on a fleet (--fan-out TAG) of at least "
                f"{self.min_keys} keys with overlapping, longer ranges")}
            return self
        hours = sum(max(0.0, (int(t[-1]) - int(t[0]) + period_ns) / 3.6e12)
                    for t, _ in runs if len(t))
        res = calibrate_threshold([(t, s) for t, _, s in stats], hours, budget,
                                  self.hold_ns(period_ns), decluster_ns=self.decluster_ns(period_ns))
        self.threshold_ = float(res.threshold)
        self.calibration_ = res.evidence()
        self.calibration_["threshold"] = self.threshold_
        self.calibration_["streak"] = self.streak
        self.enabled_ = True
        return self

    def new_state(self) -> FleetState:
        """The streaming state of the whole fleet (grow it to the number of keys)."""
        return FleetState(self)

    # -- data ---------------------------------------------------------------
    def fitted_data(self):
        return {"phase_ns": int(self.phase_ns_), "std_floor": float(self.std_floor_)}, {}

    def set_fitted(self, meta, arrays):
        self._check()
        self.phase_ns_ = int(meta["phase_ns"])
        self.std_floor_ = float(meta["std_floor"])
        if not (self.std_floor_ >= 0 and math.isfinite(self.std_floor_)):
            raise ValueError(f"fleet detector: std_floor must be a number >= 0, got "
                             f"{self.std_floor_}")


def _most_keys(det, runs) -> int:
    """The most runs with a reading in one bin (the keys a bin could compare)."""
    if not runs:
        return 0
    b = np.concatenate([np.unique(det.bins(t)) for t, _ in runs if len(t)] or [np.empty(0)])
    return int(np.unique(b, return_counts=True)[1].max()) if len(b) else 0


class FleetState(Block):
    """Streaming state of a :class:`FleetDetector` for a whole fleet (``n`` keys as rows).

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

    def _close(self, upto: int):
        d = self.det
        n, k = self.n, self._k
        sel = self.p_bin < upto
        r, b, tt, mm = self.p_row[sel], self.p_bin[sel], self.p_t[sel], self.p_m[sel]
        self._keep_pending(~sel)
        cur = self.cur_bin if self.cur_bin != _NONE else (
            (int(b.min()) if len(b) else upto) - 1)
        U, pos = np.unique(b, return_inverse=True)
        M = np.full((len(U), n), np.nan)
        M[pos, r] = mm
        Z = _robust_z(M, d.min_keys, d.std_floor_)
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


def _robust_z(M, min_keys: int, std_floor: float) -> np.ndarray:
    """Robust z of every cell of ``M`` (bins x keys, NaN missing) across its row.

    ``(x - median) / max(1.4826 * MAD, std_floor + EPS_STD * max(1, |median|))`` as
    :func:`pipeline.baselines.fleet_zscore`; rows with fewer than ``min_keys`` finite
    values are NaN.  Medians by sorting (NaN sorts last), so a row's numbers do not depend
    on the other rows.

    >>> _robust_z(np.array([[1.0, 2.0, 3.0, np.nan], [1.0, np.nan, 2.0, np.nan]]), 3, 0.0)
    array([[-0.67449076,  0.        ,  0.67449076,         nan],
           [        nan,         nan,         nan,         nan]])
    """
    c = np.count_nonzero(np.isfinite(M), axis=1)
    ok = c >= min_keys
    Z = np.full(M.shape, np.nan)
    if not ok.any():
        return Z
    X, c = M[ok], c[ok]
    med = _median_rows(X, c)
    dev = X - med[:, None]
    mad = _median_rows(np.abs(dev), c)
    den = np.maximum(_MAD * mad, std_floor + config.EPS_STD * np.maximum(1.0, np.abs(med)))
    Z[ok] = dev / den[:, None]
    return Z


def _median_rows(X, c) -> np.ndarray:
    """The median of the ``c[i]`` finite values of each row (NaN elsewhere in the row)."""
    s = np.sort(X, axis=1)
    i = np.arange(len(s))
    return (s[i, (c - 1) // 2] + s[i, c // 2]) / 2
