"""Shape: K-Means reconstruction error of sin²-windowed segments (the tutorial's detector).

Wraps :class:`~pipeline.kmeans.KMeansReconstructor` (fit) and
:class:`~pipeline.scoring.SegmentScorer` (streaming), so the calibration
scores, the batch twin and the stream share one code path.  One output point
per complete segment, at its centre sample's time: ``max_error`` (the
maximum absolute error against the nearest centroid), ``threshold`` and
``anomaly``, the names of the tutorial's ``error_ekg.ERROR`` measurement.
"""

from __future__ import annotations

import numpy as np

from .. import config
from ..kmeans import KMeansReconstructor
from ..scoring import SegmentScorer, score_segments_batch
from .base import Detector, DetectorOutput, DetectorState, hold_alarm, register

__all__ = ["ShapeDetector"]


@register
class ShapeDetector(Detector):
    """K-Means reconstruction error per segment.

    Parameters
    ----------
    n_clusters, segment_len, train_slide, slide_len, random_state
        As :class:`~pipeline.kmeans.KMeansReconstructor` (``slide_len`` is
        the scoring slide; default ``segment_len // 2``).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(4000) * 10**7
    >>> x = np.sin(np.arange(4000) / 5.0)
    >>> det = ShapeDetector(n_clusters=8).fit([(t[:2000], x[:2000])], 1e7)
    >>> det = det.calibrate([(t[2000:], x[2000:])], 1e7, 3600.0)
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
                 train_slide=config.TRAIN_SLIDE, slide_len=None, random_state=0):
        self.n_clusters = n_clusters
        self.segment_len = segment_len
        self.train_slide = train_slide
        self.slide_len = slide_len
        self.random_state = random_state

    def get_params(self) -> dict:
        return {"n_clusters": self.n_clusters, "segment_len": self.segment_len,
                "train_slide": self.train_slide, "slide_len": self.slide_len,
                "random_state": self.random_state}

    def fit(self, runs, period_ns: float) -> ShapeDetector:
        self.model_ = KMeansReconstructor(
            n_clusters=self.n_clusters, segment_len=self.segment_len,
            train_slide=self.train_slide, slide_len=self.slide_len,
            random_state=self.random_state).fit([np.asarray(v, np.float64) for _, v in runs])
        self.period_ns_ = float(period_ns)
        return self

    def calibration_scores(self, times_ns, values):
        seg = score_segments_batch(self.model_, times_ns, values, self.period_ns_)
        return seg.times, seg.errors

    def new_state(self) -> ShapeState:
        return ShapeState(self)

    # -- data -------------------------------------------------------------
    def fitted_data(self):
        m = self.model_
        return ({"slide_len": int(m.slide_len_),
                 "n_train_segments": int(getattr(m, "n_train_segments_", 0)),
                 "algorithm": getattr(m, "algorithm_", None)},
                {"centroids": m.cluster_centers_, "window": m.window_})

    def set_fitted(self, meta, arrays):
        m = KMeansReconstructor(n_clusters=self.n_clusters, segment_len=self.segment_len,
                                train_slide=self.train_slide, slide_len=self.slide_len,
                                random_state=self.random_state)
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
        """Score the segments these samples complete.  Non-finite samples are left out: like a
        gap, no segment spans one (NaN in, no score out, never an alarm)."""
        d = self.det
        values = np.asarray(values, np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            times_ns, values = np.asarray(times_ns, np.int64)[finite], values[finite]
        seg = self.scorer.update(d.model_, times_ns, values)
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
