"""Thresholds learned from held-out normal scores, separate from any model.

A detector produces scores (higher = more anomalous); :class:`ScoreThreshold`
turns held-out *normal* scores into a threshold, like PyOD's ``threshold_``
or river's ``ThresholdFilter``, and knows nothing about the model.  Fit it on
scores of normal data the model was **not** trained on: scores of the
training data are optimistic (the centroids were fitted to them).

Why not the tutorial's rule.  The tutorial set its threshold (8.8 on its
data, :data:`pipeline.config.TUTORIAL_THRESHOLD`) as the maximum absolute
error of the *stitched* reconstruction over the training data, yet alerted
on a *different* quantity: one windowed segment against its own nearest
centroid.  The two errors do not have the same distribution, so the
threshold's false-alarm rate was unknown.  Here the same function
(:meth:`pipeline.kmeans.KMeansReconstructor.score_segments`) produces both
the calibration scores and the live scores.  :func:`tutorial_threshold` is
kept only to compare with the original.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = ["ScoreThreshold", "FewScoresWarning", "tutorial_threshold", "METHODS"]

METHODS = ("quantile", "max")
"""Threshold rules accepted by :class:`ScoreThreshold`."""


class FewScoresWarning(UserWarning):
    """Too few calibration scores to resolve the requested false-alarm rate."""


def _check_real(name: str, value, lo: float, hi: float, lo_open: bool, hi_open: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and np.isfinite(value)
    if ok:
        value = float(value)
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be a number in {rng}, got {value!r}")
    return value


class ScoreThreshold(BaseEstimator):
    """Threshold from held-out normal scores; ``predict`` flags ``scores > threshold_``.

    Parameters
    ----------
    method : {"quantile", "max"}, default="quantile"
        ``"quantile"``: ``threshold_ = margin * quantile(scores, 1 - false_alarm_rate)``
        (numpy's default linear interpolation).  ``"max"``:
        ``threshold_ = margin * max(scores)``.
    false_alarm_rate : float, default=1e-3
        Target fraction of normal scores above the threshold, in (0, 1).
        Used by ``"quantile"`` only.
    margin : float, default=1.0
        Multiplier (> 0) applied to the quantile or max, for non-negative
        scores such as reconstruction errors.

    Attributes
    ----------
    threshold_ : float
        The threshold: a score strictly above it is an anomaly.
    method_ : str
        The rule used.
    n_scores_ : int
        Number of calibration scores.
    base_ : float
        The quantile or max before the margin was applied.
    score_max_ : float
        Largest calibration score.
    few_scores_ : bool
        True when ``method="quantile"`` and ``n_scores_ < 1 / false_alarm_rate``:
        the requested quantile lies between the two largest scores, so the
        threshold is in effect the max and the false-alarm rate is not
        resolved.  A :class:`FewScoresWarning` is issued.
    calibration_alarm_rate_ : float
        Fraction of the calibration scores above ``threshold_``.

    Examples
    --------
    >>> t = ScoreThreshold(method="max", margin=1.5).fit([1.0, 2.0, 4.0])
    >>> t.threshold_
    6.0
    >>> t.predict([5.0, 7.0, np.nan]).tolist()
    [False, True, False]
    >>> t = ScoreThreshold(false_alarm_rate=0.1).fit(np.arange(101.0))
    >>> t.threshold_, t.few_scores_
    (90.0, False)
    """

    def __init__(self, method: str = "quantile", false_alarm_rate: float = 1e-3, margin: float = 1.0):
        self.method = method
        self.false_alarm_rate = false_alarm_rate
        self.margin = margin

    def fit(self, scores, y=None):
        """Learn ``threshold_`` from held-out normal scores.

        Parameters
        ----------
        scores : array_like
            Scores of normal data (any shape, flattened).  All must be finite.
        y : ignored

        Returns
        -------
        self : ScoreThreshold

        Raises
        ------
        ValueError
            On bad parameters, no scores, or NaN/inf scores (drop the
            segments that could not be scored before calibrating).
        """
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        far = _check_real("false_alarm_rate", self.false_alarm_rate, 0.0, 1.0, True, True)
        margin = _check_real("margin", self.margin, 0.0, np.inf, True, True)
        try:
            s = np.asarray(scores, dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"scores must be an array of numbers: {exc}") from None
        if s.size == 0:
            raise ValueError("scores must hold at least 1 held-out normal score, got 0")
        finite = np.isfinite(s)
        if not finite.all():
            raise ValueError(
                f"scores must be finite, got {s.size - int(np.count_nonzero(finite))} NaN/inf value(s) "
                f"out of {s.size}; drop the segments that could not be scored before calibrating"
            )
        self.score_max_ = float(s.max())
        self.few_scores_ = False
        if self.method == "max":
            base = self.score_max_
        else:
            base = float(np.quantile(s, 1.0 - far))
            if s.size < 1.0 / far:
                self.few_scores_ = True
                warnings.warn(
                    f"{s.size} calibration scores cannot resolve false_alarm_rate={far:g} "
                    f"(needs at least {int(np.ceil(1.0 / far))}): the quantile threshold is in effect "
                    "the max of the calibration scores",
                    FewScoresWarning,
                    stacklevel=2,
                )
        self.method_ = self.method
        self.n_scores_ = int(s.size)
        self.base_ = base
        self.threshold_ = float(margin * base)
        self.calibration_alarm_rate_ = float(np.count_nonzero(s > self.threshold_) / s.size)
        return self

    def predict(self, scores) -> np.ndarray:
        """``scores > threshold_`` as a bool array of the same shape; NaN never alerts.

        Parameters
        ----------
        scores : array_like

        Returns
        -------
        ndarray of bool
        """
        check_is_fitted(self)
        s = np.asarray(scores, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return s > self.threshold_


def tutorial_threshold(model, x) -> float:
    """The original tutorial's threshold rule, for comparison only.

    The max absolute error of the stitched reconstruction over ``x``:
    ``nanmax |model.reconstruct(run) - run|`` over all runs.  Each run is
    reconstructed on its own (never stitched across runs); runs shorter than
    one segment are skipped.

    Parameters
    ----------
    model : fitted KMeansReconstructor (anything with ``reconstruct`` and ``segment_len``)
    x : array_like of shape (n,), or list of such arrays
        Usually the training data, as in the tutorial.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If no sample of ``x`` can be reconstructed (all runs too short).

    Examples
    --------
    >>> from pipeline.kmeans import KMeansReconstructor
    >>> x = np.tile([0.0, 1.0, 2.0, 1.0], 50)
    >>> m = KMeansReconstructor(n_clusters=2, segment_len=4).fit(x)
    >>> bool(tutorial_threshold(m, [x[:100], x[100:]]) < 1e-9)
    True
    """
    if isinstance(x, (list, tuple)) and len(x) and all(np.ndim(r) >= 1 for r in x):
        runs = [np.asarray(r, dtype=np.float64) for r in x]
    else:
        runs = [np.asarray(x, dtype=np.float64)]
    seg_len = int(model.segment_len)
    best = -np.inf
    for run in runs:
        if run.ndim == 1 and run.size < seg_len + seg_len // 2:
            continue  # no sample covered by two windows
        err = np.abs(model.reconstruct(run) - run)
        if np.isfinite(err).any():
            best = max(best, float(np.nanmax(err)))
    if not np.isfinite(best):
        raise ValueError(
            f"no sample can be reconstructed: every run is shorter than segment_len + segment_len // 2 "
            f"= {seg_len + seg_len // 2} samples (got lengths {[r.size for r in runs][:10]})"
        )
    return best
