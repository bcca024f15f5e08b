"""Slow, obviously correct reference implementations (stumpy's ``tests/naive.py`` style).

Written the way the original tutorials wrote them: plain Python loops, one
segment or one sample at a time.  Every fast kernel in ``pipeline`` is
compared with its reference here.  Nothing in ``pipeline`` imports this file.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

# ---------------------------------------------------------------------------
# regular series
# ---------------------------------------------------------------------------


def runs_and_gaps(times, period, jitter_tol=0.1):
    """Split sorted timestamps into runs the obvious way; classify every break."""
    runs, gaps, irregular = [], [], []
    start = 0
    for i in range(1, len(times)):
        step = times[i] - times[i - 1]
        if (1 - jitter_tol) * period <= step <= (1 + jitter_tol) * period:
            continue
        runs.append((start, i))
        if step >= 1.5 * period:
            gaps.append((int(times[i - 1]), int(times[i])))
        else:
            irregular.append(i)
        start = i
    runs.append((start, len(times)))
    return runs, gaps, irregular


# ---------------------------------------------------------------------------
# segmentation, windowing, K-Means reconstruction, thresholds
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# rolling z-score, streak guard, long and fleet baselines
# ---------------------------------------------------------------------------
