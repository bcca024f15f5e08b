"""Fleet baseline: each sensor against its own normal relation to its fleet.

A building's daily cycle and its weather are common to every sensor and
cancel when a sensor is compared with the others; what is left is small and
stationary, so a drift or a slow slide stands out, which a per-sensor
baseline sees badly (its baseline moves with the fault).  Sensors sit at
levels of their own (a warm room, a sensor near a window), so a key is not
compared with the fleet's median itself but with where it normally sits
relative to it, learned per key on the training data::

    s_k     = EWMA of key k's readings (half-life halflife_s)
    m(b)    = median_j (s_j - offset_j)                 # over the keys in bin b
    z_k(b)  = (s_k - offset_k - m(b)) / max(scale_k, 1.4826 * MAD_j(s_j - offset_j), floor)
    alarm   when min |z_k| over the last ``streak`` bins > threshold    # then held, as every one

Fit (per key, on the training runs): ``offset_k`` is the median of ``s_k -
m`` over the training bins, ``scale_k`` 1.4826 x the median of ``|s_k -
offset_k - m|`` (refined twice, ``m`` the corrected median), at least the
median of all keys' scales (a very quiet key is not hypersensitive).  The
bin's own spread of the corrected values is a floor too: when several keys
move at once (a small fleet with faults) the median is pulled, and the
others are not flagged for it.
A key the model does not know (a new sensor; or no key names given at fit)
gets offset 0 and the scale of an unknown key: the typical scale combined
with the spread of the known keys' offsets (``hypot(median scale, 1.4826 x
MAD of the offsets)``), so a new sensor is compared roughly as the fleet's
own spread allows until the model is retrained.  The trade-off: a key that
is already off during training is learned as normal there.

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
:class:`FleetState` lives in :mod:`pipeline.detectors.fleet_state`; this module holds
the detector: its fit, calibration and model-file data.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import config
from .base import Detector, default_hold_ns, register
from .flatline import resolution
from .fleet_state import _MAD, FleetState, _Collector

__all__ = ["FleetDetector", "FleetState"]


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
        Absolute floor of every key's scale; ``None`` learns half the data's resolution.

    Examples
    --------
    Nine sensors sharing a daily cycle; one drifts away from the others:

    >>> rng = np.random.default_rng(0)
    >>> n, K = 20000, 9
    >>> t = np.arange(n, dtype=np.int64) * 2 * 10**9                   # every 2 s
    >>> common = 2 * np.sin(np.arange(n) / 3000.0)
    >>> x = [20 + common + 0.05 * rng.standard_normal(n) for k in range(K)]
    >>> keys = [f"s{k}" for k in range(K)]
    >>> det = FleetDetector(halflife_s=120).fit([(t[:8000], v[:8000]) for v in x], 2e9, keys)
    >>> det = det.calibrate([(t[:14000], v[:14000]) for v in x], 2e9, 1 / 24, keys)
    >>> x[2] = x[2] + np.clip((np.arange(n) - 16000) / 1500, 0, None)   # +1 per 50 min
    >>> st = det.new_state()
    >>> st.grow(K)
    >>> st.set_keys(keys)
    >>> out = st.update(np.arange(K), np.arange(K + 1) * 6000, np.tile(t[14000:], K),
    ...                 np.concatenate([v[14000:] for v in x]))
    >>> alarmed = np.repeat(out.rows, np.diff(out.starts))[out.alarm]
    >>> sorted(set(alarmed.tolist())), float(out.times[out.alarm].min() / 1e9 - 32000)
    ([2], 214.0)
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

    def fit(self, runs, period_ns: float, keys=None) -> FleetDetector:
        """Learn the bin grid's phase, the scale's floor and each key's relation to the fleet.

        ``runs`` are the runs of every key (several per key after gaps); ``keys`` names the
        key of each run (``None``: each run a key of its own, none kept for the stream: every
        key is then scored as unknown)."""
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
        self.keys_, self.offsets_, self.scales_ = [], np.empty(0), np.empty(0)
        self.fleet_scale_ = self.unknown_scale_ = 1.0
        names = _run_names(runs, keys)
        learned = self._relations(runs, names)
        if learned is not None:
            ks, off, scl = learned
            self.fleet_scale_ = float(np.median(scl))
            spread = _MAD * float(np.median(np.abs(off - np.median(off))))
            self.unknown_scale_ = float(math.hypot(self.fleet_scale_, spread))
            if keys is not None:
                self.keys_, self.offsets_, self.scales_ = ks, off, scl
        return self

    def _relations(self, runs, names):
        """``(keys, offsets, scales)`` of the keys with at least ``MIN_FIT_BINS`` scored
        training bins (``None`` when fewer than ``min_keys`` have them)."""
        if not runs:
            return None
        col = {}
        for k in names:
            col.setdefault(k, len(col))
        U, M = _Collector(self, len(runs)).matrix(runs)
        if not len(U):
            return None
        X = np.full((len(U), len(col)), np.nan)
        for j, k in enumerate(names):  # a key's runs do not share a bin
            c = col[k]
            X[:, c] = np.where(np.isfinite(M[:, j]), M[:, j], X[:, c])
        ok = np.count_nonzero(np.isfinite(X), axis=1) >= self.min_keys
        X = X[ok]
        n_bins = np.count_nonzero(np.isfinite(X), axis=0)
        use = n_bins >= MIN_FIT_BINS
        if np.count_nonzero(use) < self.min_keys:
            return None
        X = X[:, use]
        X = X[np.count_nonzero(np.isfinite(X), axis=1) >= self.min_keys]
        off = np.zeros(X.shape[1])
        with warnings.catch_warnings():  # a key without a bin left: NaN, floored below
            warnings.simplefilter("ignore", RuntimeWarning)
            for _ in range(3):  # the median of the raw values, then of the corrected ones
                m = np.nanmedian(X - off, axis=1)
                off = off + np.nan_to_num(np.nanmedian(X - off - m[:, None], axis=0))
            m = np.nanmedian(X - off, axis=1)
            scl = _MAD * np.nanmedian(np.abs(X - off - m[:, None]), axis=0)
        scl = np.nan_to_num(scl, nan=0.0)
        scl = np.maximum(scl, SCALE_FLOOR * float(np.median(scl)))
        scl = np.maximum(scl, self.std_floor_ + config.EPS_STD)
        ks = [k for k, u in zip(col, use.tolist(), strict=True) if u]
        return ks, off.astype(np.float64), scl.astype(np.float64)

    def relation(self, keys) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets, scales)`` of ``keys``: the learned ones, an unknown key's elsewhere.

        >>> d = FleetDetector()
        >>> d.keys_, d.offsets_, d.scales_ = ["a"], np.array([2.0]), np.array([0.5])
        >>> d.unknown_scale_ = 3.0
        >>> [a.tolist() for a in d.relation(["b", "a"])]
        [[0.0, 2.0], [3.0, 0.5]]
        """
        idx = {k: i for i, k in enumerate(getattr(self, "keys_", []))}
        at = np.fromiter((idx.get(k, -1) for k in keys), np.int64, len(keys))
        known = at >= 0
        off = np.zeros(len(keys))
        scl = np.full(len(keys), float(getattr(self, "unknown_scale_", 1.0)))
        if known.any():
            off[known] = self.offsets_[at[known]]
            scl[known] = self.scales_[at[known]]
        return off, scl

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

    def run_stats(self, runs, keys=None) -> list:
        """``[(times, z, stat), ...]`` per run, every run a key of one fleet, all scored
        (``keys``: the key of each run, as at :meth:`fit`)."""
        st = FleetState(self, len(runs), threshold=math.inf)
        if keys is not None:
            st.set_keys(_run_names(runs, keys))
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

    def calibrate(self, runs, period_ns, budget, keys=None) -> FleetDetector:
        """Set the threshold on the fleet's runs (all keys at once, ``keys`` naming the key of
        each run as at :meth:`fit`) to ``budget`` per key."""
        from ..calibrate import calibrate_threshold

        stats = self.run_stats(runs, keys)
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
        # an event may last: the share of time in alarm is bounded too (the budget's events of
        # a typical excursion each, a half-life long)
        per_hour = getattr(budget, "per_hour", budget)
        share = min(1.0, float(per_hour) * max(self.halflife_s, 1.0) / 3600.0)
        st = np.concatenate([s[np.isfinite(s)] for _, _, s in stats] or [np.empty(0)])
        if len(st):
            by_time = float(np.quantile(st, 1.0 - share))
            self.calibration_["threshold_by_time"] = by_time
            self.calibration_["alarm_share_bound"] = share
            if by_time > self.threshold_:
                self.threshold_ = by_time
        self.calibration_["threshold"] = self.threshold_
        self.calibration_["streak"] = self.streak
        self.enabled_ = True
        return self

    def new_state(self) -> FleetState:
        """The streaming state of the whole fleet (grow it to the number of keys)."""
        return FleetState(self)

    # -- data ---------------------------------------------------------------
    def fitted_data(self):
        return ({"phase_ns": int(self.phase_ns_), "std_floor": float(self.std_floor_),
                 "fleet_scale": float(self.fleet_scale_),
                 "unknown_scale": float(self.unknown_scale_), "keys": list(self.keys_)},
                {"offsets": np.asarray(self.offsets_, np.float64),
                 "scales": np.asarray(self.scales_, np.float64)})

    def set_fitted(self, meta, arrays):
        self._check()
        self.phase_ns_ = int(meta["phase_ns"])
        self.std_floor_ = float(meta["std_floor"])
        if not (self.std_floor_ >= 0 and math.isfinite(self.std_floor_)):
            raise ValueError(f"fleet detector: std_floor must be a number >= 0, got "
                             f"{self.std_floor_}")
        self.fleet_scale_ = float(meta["fleet_scale"])
        self.unknown_scale_ = float(meta["unknown_scale"])
        keys = meta["keys"]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or \
                len(set(keys)) != len(keys):
            raise ValueError("fleet detector: keys must be a list of distinct strings")
        off, scl = arrays.get("offsets"), arrays.get("scales")
        for name, a in (("offsets", off), ("scales", scl)):
            if a is None or a.dtype != np.float64 or a.shape != (len(keys),):
                raise ValueError(f"fleet detector: array {name!r} missing or not float64 "
                                 f"({len(keys)},)")
        if not (np.isfinite(off).all() and (scl > 0).all() and np.isfinite(scl).all()
                and self.unknown_scale_ > 0 and math.isfinite(self.unknown_scale_)
                and self.fleet_scale_ > 0 and math.isfinite(self.fleet_scale_)):
            raise ValueError("fleet detector: offsets must be finite and scales finite and > 0")
        self.keys_, self.offsets_, self.scales_ = list(keys), np.array(off), np.array(scl)


MIN_FIT_BINS = 100
"""Scored training bins a key needs for its relation to the fleet to be learned."""
SCALE_FLOOR = 1.0


def _run_names(runs, keys) -> list:
    """The key of each run: ``keys`` checked, or one key per run."""
    if keys is None:
        return [f"#{i}" for i in range(len(runs))]
    keys = [str(k) for k in keys]
    if len(keys) != len(runs):
        raise ValueError(f"give the key of every run: {len(runs)} runs, {len(keys)} keys")
    return keys


def _most_keys(det, runs) -> int:
    """The most runs with a reading in one bin (the keys a bin could compare)."""
    if not runs:
        return 0
    b = np.concatenate([np.unique(det.bins(t)) for t, _ in runs if len(t)] or [np.empty(0)])
    return int(np.unique(b, return_counts=True)[1].max()) if len(b) else 0
