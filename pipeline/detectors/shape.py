"""Shape: K-Means reconstruction error of sin²-windowed segments (the tutorial's detector).

Wraps :class:`~pipeline.kmeans.KMeansReconstructor` (fit) and
:class:`~pipeline.scoring.SegmentScorer` (streaming), so the calibration
scores, the batch twin and the stream share one code path.  One output point
per complete segment, at its centre sample's time: ``max_error`` (the
maximum absolute error against the nearest centroid), ``threshold`` and
``anomaly``, the names of the tutorial's ``error_ekg.ERROR`` measurement.

Centring.  The tutorial clusters raw segments, so every baseline offset
the training data did not show (breathing wander on an EKG) costs
reconstruction error, and a threshold that tolerates it is blind to small
shape faults.  A *centred* segment (:class:`CenteredKMeans`) loses its
window-weighted mean, the local baseline, before clustering and scoring:
the dictionary holds shapes only, a step still shows as an edge.  That is
right for a signal with shape at the segment's scale (an EKG at any rate),
and wrong for a slow one (a temperature sensor at 2 s: a 32-sample segment
is a short, nearly straight piece of a daily cycle, and its *level* is what
tells a drifted or offset sensor apart).  ``center="auto"`` (the default)
decides at fit, from the training data (:func:`has_shape`): centre when the
segments' means vary less than :data:`SHAPE_RATIO` times the mean variance
within a segment.  On the project's suites the ratio is 0.1-6 for EKG at 90
and 360 Hz and 400-1500 for the temperature and humidity fleets.

Slow signals.  Raw segments of a slow signal are a detector of *levels* the
training and held-out data did not show: they see a drift or a slide once it
leaves that range, and they raise false alarms when normal weather does
(the test humidity fleet: 53 of the sensor suite's 100 false alarms).  The
level belongs to the detectors built for it: the drift detector (a sensor
against its own past) and the fleet detector (a sensor against the others at
the same time, which cancels the weather).  ``slow="off"`` turns the shape
detector off, at calibration, for a signal ``center="auto"`` finds slow;
``pipeline.train`` asks for it whenever a fleet detector is trained beside
it.  (Centred segments of a slow signal only see fingers and spikes, which
the z-score sees too, with more false alarms: docs/detectors.md.)

Missing and extreme samples (``docs/extremes.md``): a NaN, an inf or a
sample beyond ``config.Z_MAX_ABS`` (1e100) in magnitude is left out like a
gap, at fit, calibration and in the stream: no segment spans it, so it never
scores or alarms.  Any sample within the bound is scored.
"""

from __future__ import annotations

import numpy as np

from .. import config
from ..checks import _usable
from ..kmeans import WINDOWS, KMeansReconstructor, _as_runs
from ..scoring import SegmentScorer, score_segments_batch
from ..segment import _as_series, n_segments, overlap_add, sliding_segments
from .base import Detector, DetectorOutput, DetectorState, hold_alarm, register

__all__ = ["ShapeDetector", "CenteredKMeans", "center_segments", "has_shape", "usable_samples",
           "SHAPE_RATIO"]

MAX_CLUSTERS = 10_000
"""Largest ``n_clusters`` (the default is 150; K-Means with more is hours of fitting)."""
MAX_SEGMENT_LEN = 8192
"""Largest ``segment_len`` (the default is 32; the training matrix is segments x length)."""

SHAPE_RATIO = 20.0
"""``center="auto"`` centres when the between-segment variance of the segments' means is below
this times their mean within-segment variance (see the module docstring)."""


def _check_int(name: str, value, lo: int, hi: int, alt: str = "") -> int:
    """``value`` as an int in ``[lo, hi]``, or a ValueError naming ``name``, the range and the value.

    >>> _check_int("n_clusters", 0, 1, 10)
    Traceback (most recent call last):
    ValueError: n_clusters must be an integer in [1, 10], got 0
    """
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) \
        and lo <= value <= hi
    if not ok:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}]{alt}, got {value!r}")
    return int(value)


def usable_samples(times_ns, values):
    """``(times, values)`` without the samples the detector leaves out (NaN, inf and
    ``|x| > config.Z_MAX_ABS``): a gap is left where they were.

    >>> t, v = usable_samples([0, 1, 2, 3], [1.0, np.nan, 1.7e308, -1e100])
    >>> t.tolist(), v.tolist()
    ([0, 3], [1.0, -1e+100])
    """
    t = np.asarray(times_ns)
    v = np.asarray(values, np.float64)
    ok = _usable(v)
    return (t, v) if ok.all() else (t[ok], v[ok])


def _usable_runs(values) -> list:
    """Each run cut at its unusable samples (fit sees values only: cutting keeps segments from
    spanning a left-out sample, as the stream's gap rule does)."""
    out = []
    for v in values:
        ok = _usable(v)
        if ok.all():
            out.append(v)
            continue
        edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.astype(np.int8), [0]))))
        out.extend(v[a:b] for a, b in zip(edges[::2], edges[1::2], strict=True))
    return out


def center_segments(segs, window) -> np.ndarray:
    """Segments minus their window-weighted mean ``sum(w * seg) / sum(w)`` (the local baseline).

    >>> w = np.array([0.0, 0.5, 1.0, 0.5])
    >>> center_segments([[1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 4.0, 2.0]], w).tolist()
    [[0.0, 0.0, 0.0, 0.0], [-3.0, -1.0, 1.0, -1.0]]
    """
    segs = np.asarray(segs, np.float64)
    return segs - _baseline(segs, window)[..., None]


def _baseline(segs, window) -> np.ndarray:
    """``sum(w * seg) / sum(w)`` per segment, summed column by column: elementwise operations
    only, so a segment's baseline is the same bits whichever block of segments it comes in
    (a matrix-vector product may sum in another order for another block shape)."""
    w = np.asarray(window, np.float64)
    b = segs[..., 0] * w[0]
    for j in range(1, len(w)):
        b = b + segs[..., j] * w[j]
    return b / w.sum()


def has_shape(runs, segment_len: int, train_slide: int = 2) -> tuple[bool, float]:
    """``(centre?, ratio)``: the variance of the segments' window-weighted means over their mean
    window-weighted variance within; centre when the ratio is below :data:`SHAPE_RATIO`.

    >>> t = np.arange(4000)
    >>> has_shape([np.sin(t / 3.0)], 32)[0]                # beats at the segment's scale
    True
    >>> has_shape([np.sin(t / 3000.0)], 32)[0]             # a slow cycle: its level matters
    False
    """
    w = WINDOWS["sin2"](segment_len)
    segs = [sliding_segments(np.asarray(r, np.float64), segment_len, train_slide) for r in runs
            if n_segments(len(r), segment_len, train_slide)]
    if not segs:
        return False, float("nan")
    x = np.concatenate(segs)
    b = x @ w / w.sum()
    within = float(np.mean(((x - b[:, None]) ** 2) @ w / w.sum()))
    between = float(np.var(b))
    ratio = between / within if within > 0 else float("inf")
    return bool(ratio < SHAPE_RATIO), ratio


class CenteredKMeans(KMeansReconstructor):
    """:class:`~pipeline.kmeans.KMeansReconstructor` of centred segments (see the module doc).

    Same parameters, attributes and scores, except that each segment loses
    its window-weighted mean (:func:`center_segments`) before it is
    windowed, clustered or scored.  :meth:`reconstruct` adds the baseline
    back, so a reconstruction still overlays the series.

    Examples
    --------
    >>> x = np.sin(2 * np.pi * np.arange(2000) / 16)
    >>> m = CenteredKMeans(n_clusters=8, segment_len=16).fit(x)
    >>> float(m.segment_errors(x + 5.0).max()) < 1e-6        # an offset is not an anomaly
    True
    >>> bool(KMeansReconstructor(n_clusters=8, segment_len=16).fit(x).segment_errors(x + 5.0).min() > 1)
    True
    """

    def fit(self, X, y=None):
        k, seg_len, train_slide, _ = self._validate_params()
        runs = [_as_series(r, name=f"X[{i}]") for i, r in enumerate(_as_runs(X))]
        window = WINDOWS[self.window](seg_len)
        parts = [sliding_segments(r, seg_len, train_slide) for r in runs
                 if n_segments(r.size, seg_len, train_slide)]
        total = sum(len(p) for p in parts)
        if total < k:
            raise ValueError(
                f"too few training segments: n_clusters={k} needs at least {k} segments, got "
                f"{total} from {len(runs)} run(s) of {sum(r.size for r in runs)} samples in all "
                f"(segment_len={seg_len}, train_slide={train_slide}); pass more normal data or "
                "lower n_clusters")
        segs = center_segments(np.concatenate(parts), window)
        # each centred segment as a run of its own: the parent windows and clusters them as is
        super().fit(list(segs))
        self.n_runs_ = len(runs)
        return self

    def _kernel(self, segs):
        return super()._kernel(center_segments(segs, self.window_))

    def reconstruct(self, x) -> np.ndarray:
        """Overlap-add of the nearest centroids plus each segment's windowed baseline."""
        arr = _as_series(x)
        seg_len = self.cluster_centers_.shape[1]
        half = seg_len // 2
        segs = sliding_segments(arr, seg_len, half)
        w = self.window_
        idx = self.nearest(segs)
        base = _baseline(segs, w)[:, None] * w
        out = overlap_add(self.cluster_centers_[idx] + base, half, arr.size)
        out[:half] = np.nan
        out[len(segs) * half:] = np.nan
        return out


@register
class ShapeDetector(Detector):
    """K-Means reconstruction error per segment.

    Parameters
    ----------
    n_clusters, segment_len, train_slide, slide_len, random_state
        As :class:`~pipeline.kmeans.KMeansReconstructor` (``slide_len`` is
        the scoring slide; default ``segment_len // 2``).
    center : {"auto", True, False}, default="auto"
        Subtract each segment's window-weighted mean first
        (:class:`CenteredKMeans`); ``False``: the tutorial's raw segments;
        ``"auto"``: decide at fit (:func:`has_shape`).  The choice is
        ``center_``, with the ratio it was made on in ``shape_ratio_``.
    slow : {"raw", "off"}, default="raw"
        What ``center="auto"`` does with a slow signal (no shape at the segment's
        scale): keep raw segments (a level detector), or turn the detector off at
        calibration (``enabled_ = False``, the reason in ``calibration_``): the level is
        then left to the drift and fleet detectors.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(4000) * 10**7
    >>> x = np.sin(np.arange(4000) / 5.0)
    >>> det = ShapeDetector(n_clusters=8).fit([(t[:2000], x[:2000])], 1e7)
    >>> det = det.calibrate([(t[2000:], x[2000:])], 1e7, 1.0)
    >>> out = det.new_state().update_many(t[2000:], x[2000:])
    >>> len(out), bool(out.alarm.any())
    (124, False)
    """

    name = "shape"
    label = "shape"
    per_sample = False
    score_field = "max_error"
    threshold_field = "threshold"
    alarm_field = "anomaly"

    def __init__(self, n_clusters=config.N_CLUSTERS, segment_len=config.SEGMENT_LEN,
                 train_slide=config.TRAIN_SLIDE, slide_len=None, random_state=0, center="auto",
                 slow="raw"):
        self.n_clusters = n_clusters
        self.segment_len = segment_len
        self.train_slide = train_slide
        self.slide_len = slide_len
        self.random_state = random_state
        self.center = center
        self.slow = slow

    def _model(self, center: bool) -> KMeansReconstructor:
        kind = CenteredKMeans if center else KMeansReconstructor
        return kind(n_clusters=self.n_clusters, segment_len=self.segment_len,
                    train_slide=self.train_slide, slide_len=self.slide_len,
                    random_state=self.random_state)

    def _check_params(self) -> None:
        """Bounds on the parameters, each error naming the parameter, its range and the value."""
        _check_int("n_clusters", self.n_clusters, 1, MAX_CLUSTERS)
        seg = _check_int("segment_len", self.segment_len, 2, MAX_SEGMENT_LEN)
        if seg % 2:
            raise ValueError(f"segment_len must be even, got {seg}")
        _check_int("train_slide", self.train_slide, 1, seg)
        if self.slide_len is not None:
            _check_int("slide_len", self.slide_len, 1, seg)
        if self.random_state is not None:
            _check_int("random_state", self.random_state, 0, 2**32 - 1, " or None")
        if self.center not in ("auto", True, False):
            raise ValueError(f"center must be 'auto', True or False, got {self.center!r}")
        if self.slow not in ("raw", "off"):
            raise ValueError(f"slow must be 'raw' or 'off', got {self.slow!r}")

    def fit(self, runs, period_ns: float) -> ShapeDetector:
        self._check_params()
        values = _usable_runs([np.asarray(v, np.float64) for _, v in runs])
        if runs and not any(len(v) for v in values):
            raise ValueError(f"no usable training sample: all are NaN, inf or beyond "
                             f"+-{config.Z_MAX_ABS:g} (docs/extremes.md)")
        self.center_, self.shape_ratio_ = self.center, None
        if self.center == "auto":
            m = self._model(False)
            m._validate_params()
            self.center_, self.shape_ratio_ = has_shape(values, m.segment_len, m.train_slide)
        self.model_ = self._model(self.center_).fit(values)
        self.period_ns_ = float(period_ns)
        return self

    def _after_calibrate(self) -> None:
        if self.slow == "off" and self.center == "auto" and not self.center_:
            self.enabled_ = False
            self.calibration_["why_off"] = (
                f"a slow signal (its segments' means vary {self.shape_ratio_:.0f} x more than "
                f"within a segment, above {SHAPE_RATIO:g}): raw segments would be a detector of "
                "levels, which the drift and fleet detectors watch (slow='off')")

    def calibration_scores(self, times_ns, values):
        seg = score_segments_batch(self.model_, *usable_samples(times_ns, values), self.period_ns_)
        return seg.times, seg.errors

    def new_state(self) -> ShapeState:
        return ShapeState(self)

    def output_period_ns(self) -> float:
        return float(self.period_ns_) * int(self.model_.slide_len_)

    def lookahead_ns(self) -> int:
        n = int(self.model_.segment_len)
        return int(np.ceil((n - 1 - n // 2) * float(self.period_ns_)))

    # -- data -------------------------------------------------------------
    def fitted_data(self):
        m = self.model_
        ratio = getattr(self, "shape_ratio_", None)
        return ({"slide_len": int(m.slide_len_),
                 "n_train_segments": int(getattr(m, "n_train_segments_", 0)),
                 "algorithm": getattr(m, "algorithm_", None),
                 "center": bool(self.center_),
                 "shape_ratio": None if ratio is None or not np.isfinite(ratio) else ratio},
                {"centroids": m.cluster_centers_, "window": m.window_})

    def set_fitted(self, meta, arrays):
        # files from before centring hold raw-segment centroids
        self.center_ = bool(meta.get("center", False))
        self.shape_ratio_ = meta.get("shape_ratio")
        m = self._model(self.center_)
        k, seg_len, _, slide = m._validate_params()
        centers, window = arrays.get("centroids"), arrays.get("window")
        if (centers is None or window is None or centers.dtype != np.float64
                or centers.shape != (k, seg_len) or window.shape != (seg_len,)
                or not (np.isfinite(centers).all() and np.isfinite(window).all())):
            raise ValueError(f"shape detector: centroids/window missing or not float64 "
                             f"({k}, {seg_len}) / ({seg_len},) finite arrays")
        m._set_fitted(centers, window)
        m.slide_len_ = slide
        m.n_train_segments_ = meta.get("n_train_segments", 0)
        m.algorithm_ = meta.get("algorithm")
        self.model_ = m


class ShapeState(DetectorState):
    """Streaming segment scores of one series key."""

    def __init__(self, det: ShapeDetector):
        self.det = det
        m = det.model_
        self.scorer = SegmentScorer(m.segment_len, int(m.slide_len_), det.period_ns_)
        self.last_hit = None

    def update_many(self, times_ns, values) -> DetectorOutput:
        """Score the segments these samples complete.  Non-finite samples and those beyond
        ``Z_MAX_ABS`` are left out: like a gap, no segment spans one (NaN in, no score out,
        never an alarm)."""
        d = self.det
        seg = self.scorer.update(d.model_, *usable_samples(times_ns, values))
        raw = seg.errors > d.threshold_
        alarm, self.last_hit = hold_alarm(seg.times, raw, d.hold_ns(), self.last_hit)
        return DetectorOutput(d, seg.times, seg.errors, alarm, d.threshold_)

    @property
    def gaps(self):
        """Breaks found by the last update (for the caller's log)."""
        return self.scorer.last_gaps

    @property
    def n_skipped_samples(self) -> int:
        return self.scorer.n_skipped_samples

    def get_data(self):
        s = self.scorer
        return ({"n_skipped_samples": s.n_skipped_samples, "n_gaps": s.n_gaps,
                 "carry_covered": s.carry_covered, "last_time_ns": s.last_time_ns,
                 "last_hit": self.last_hit},
                {"carry_t": s.carry_t, "carry_v": s.carry_v})

    def set_data(self, meta, arrays):
        s = self.scorer
        s.carry_t = np.asarray(arrays["carry_t"], np.int64)
        s.carry_v = np.asarray(arrays["carry_v"], np.float64)
        if s.carry_t.ndim != 1 or s.carry_t.shape != s.carry_v.shape \
                or len(s.carry_t) >= s.segment_len:
            raise ValueError("shape state: carry arrays of the wrong shape")
        s.n_skipped_samples = int(meta["n_skipped_samples"])
        s.n_gaps = int(meta["n_gaps"])
        s.carry_covered = int(meta["carry_covered"])
        s.last_time_ns = None if meta["last_time_ns"] is None else int(meta["last_time_ns"])
        self.last_hit = None if meta["last_hit"] is None else int(meta["last_hit"])
