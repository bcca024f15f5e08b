"""Baseline step: the level of the next half second against the level of the half second before.

A lead that moves on the skin, a loose connector or a sensor knocked out of
place shifts the baseline of a signal at once.  On a signal with fast
structure (an EKG) neither the shape detector nor the z-score sees it well:
a step inside a segment is an edge much like a QRS slope (at 90 Hz a
32-sample segment spans 0.36 s), and every heartbeat is many standard
deviations from the samples before it, so the z-score is off there.  The
*median* of half a second sits on the baseline between the beats, whatever
the beats do, so

    ``step(t) = median(x[t, t + w)) - median(x[t - w, t))``

jumps by the size of a baseline step and stays near zero for beats, noise
and slow wander.  It is stamped at ``t``, where a step would have happened,
and scored at about one sample in ``stride`` (:mod:`pipeline.detectors.windowed`:
the points do not depend on how the series is chunked or read).  Its
threshold on ``|step|`` is calibrated to the budget like every detector's
(its unit is the series' own), never below three steps of the data's
resolution; it is off for slow signals (``slow="off"``), whose level steps
the z-score sees.
"""

from __future__ import annotations

import numpy as np

from .base import register
from .windowed import WindowDetector, running_median, window_scores

__all__ = ["StepDetector", "level_steps"]


def _step(windows: np.ndarray) -> np.ndarray:
    w = windows.shape[1] // 2
    # + 0.0: a step of zero is +0.0 whichever zero a median picks among 0.0 and -0.0
    return np.median(windows[:, w:], axis=1) - np.median(windows[:, :w], axis=1) + 0.0


def _step_at_ends(x: np.ndarray, ends: np.ndarray, span: int) -> np.ndarray:
    """:func:`_step` of the windows ``x[e - span:e]``, from the running medians of ``x``."""
    w = span // 2
    med = running_median(x, w)
    return med[ends - w] - med[ends - span] + 0.0


_step.at_ends = _step_at_ends


def level_steps(times, values, w: int, stride: int, period_ns: float, carry=None):
    """``(times, step, carry)``: the level step of every scored point of a chunk.

    A point is scored where its stamp (the first sample of the later window) is the first
    sample of a time bin of ``round(stride * period_ns)`` ns; ``carry`` as
    :func:`~pipeline.detectors.windowed.window_scores`'s.

    >>> t = np.arange(12) * 10
    >>> x = np.array([0, 0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 5], float)
    >>> ts, s, _ = level_steps(t, x, 3, 1, 10)
    >>> ts.tolist(), s.tolist()
    ([30, 40, 50, 60, 70, 80, 90], [0.0, 0.0, 5.0, 5.0, 5.0, 0.0, 0.0])
    """
    return window_scores(times, values, 2 * w, w, stride, period_ns, _step, carry)


@register
class StepDetector(WindowDetector):
    """Baseline step: ``median`` of the next ``window_s`` against the ``window_s`` before it.

    Parameters: those of :class:`~pipeline.detectors.windowed.WindowDetector`.

    Examples
    --------
    A beat-like signal at 90 Hz; a baseline step of 0.5 one minute into the scored part:

    >>> rng = np.random.default_rng(0)
    >>> n = 90 * 600
    >>> t = np.arange(n, dtype=np.int64) * round(1e9 / 90)
    >>> x = np.round(np.sin(np.arange(n) * 2 * np.pi / 75) ** 15 + 0.01 * rng.standard_normal(n), 2)
    >>> det = StepDetector().fit([(t[:18000], x[:18000])], 1e9 / 90)
    >>> det = det.calibrate([(t[18000:36000], x[18000:36000])], 1e9 / 90, 1.0)
    >>> y = x[36000:].copy(); y[5400:] += 0.5
    >>> out = det.new_state().update_many(t[36000:], y)
    >>> hit = out.times[out.alarm]
    >>> bool(abs((hit[0] - t[36000 + 5400]) / 1e9) < 0.5), bool(out.alarm[out.times < t[41000]].any())
    (True, False)
    """

    name = "step"
    label = "baseline step"
    score_field = "step"
    threshold_field = "step_threshold"
    alarm_field = "step_alert"
    _why_slow = "a step of its level is what the z-score, drift and fleet detectors watch"

    @staticmethod
    def _span(w):
        return 2 * w

    @staticmethod
    def _offset(w):
        return w

    _score = staticmethod(_step)
