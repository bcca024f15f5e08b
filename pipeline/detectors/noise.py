"""Noise level: the median size of the sample-to-sample changes over half a second.

Muscle tremor, a loose electrode or electrical interference add fast noise
on top of a signal.  On an EKG the shape detector sees a burst only where it
distorts a segment enough, and at 90 Hz (a 32-sample segment is 0.36 s
long) the smaller bursts hide in the QRS slopes.  Between the beats an EKG
changes little from one sample to the next, and a beat's steep part is a
few samples of half a second, so the *median* of ``|x[i] - x[i - 1]|`` over
half a second stays near the ADC's quantum whatever the beats do, and rises
with the noise (for white noise of standard deviation ``s`` to about
``0.95 s``):

    ``noise(t) = median(|x[i] - x[i - 1]|)`` for the ``w`` samples ``i`` from
    ``t - w//2`` to ``t + w - w//2 - 1`` (``w + 1`` samples in all)

stamped at the window's centre and scored at about one sample in ``stride``
(:mod:`pipeline.detectors.windowed`).  Its threshold is calibrated to the
budget like every detector's (in the series' unit per sample), never below
three steps of the data's resolution; it is off for slow signals
(``slow="off"``), where the z-score weighs each reading against the spread
of the 15 before it.
"""

from __future__ import annotations

import numpy as np

from .base import register
from .windowed import WindowDetector

__all__ = ["NoiseDetector"]


def _noise(windows: np.ndarray) -> np.ndarray:
    return np.median(np.abs(np.diff(windows, axis=1)), axis=1)


@register
class NoiseDetector(WindowDetector):
    """Noise level: median ``|x[i] - x[i - 1]|`` over ``window_s`` around each scored point.

    Parameters: those of :class:`~pipeline.detectors.windowed.WindowDetector`.

    Examples
    --------
    A beat-like signal at 90 Hz; one second of noise (sd 0.1) one minute into the scored part:

    >>> rng = np.random.default_rng(0)
    >>> n = 90 * 600
    >>> t = np.arange(n, dtype=np.int64) * round(1e9 / 90)
    >>> x = np.round(np.sin(np.arange(n) * 2 * np.pi / 75) ** 15 + 0.01 * rng.standard_normal(n), 2)
    >>> det = NoiseDetector().fit([(t[:18000], x[:18000])], 1e9 / 90)
    >>> det = det.calibrate([(t[18000:36000], x[18000:36000])], 1e9 / 90, 1.0)
    >>> y = x[36000:].copy(); y[5400:5490] += np.round(0.1 * rng.standard_normal(90), 2)
    >>> out = det.new_state().update_many(t[36000:], y)
    >>> hit = out.times[out.alarm]
    >>> bool(abs(hit[0] - t[36000 + 5400]) / 1e9 < 0.5), bool(out.alarm[out.times < t[41000]].any())
    (True, False)
    """

    name = "noise"
    label = "noise"
    score_field = "noise"
    threshold_field = "noise_threshold"
    alarm_field = "noise_alert"
    _why_slow = ("a noise burst on a slow signal is what the z-score (each reading against the "
                 "spread of the 15 before it) watches")

    @staticmethod
    def _span(w):
        return w + 1

    @staticmethod
    def _offset(w):
        return 1 + w // 2

    _score = staticmethod(_noise)
