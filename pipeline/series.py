"""Boundary validation of regular series: sort, dedupe, sample period, gaps, jitter.

K-Means reconstruction (and any fixed-length segment) is only meaningful on
regularly sampled data: a segment of 32 samples must span 32 sample periods.
This module checks that once, at the boundary, and hands the core clean
float arrays split into *runs* of consecutive on-grid samples.

Rules (shared with :mod:`pipeline.scoring`, which applies the same ones to a
live stream):

* The sample period ``P`` is given or inferred as the median positive step.
* A step within ``(1 ± jitter_tol) * P`` is on grid (jitter is tolerated).
* A step of at least ``1.5 * P`` is a **gap**: the run ends there, and no
  segment is ever stitched across it.
* Any other step (too short: an extra sample; or between ``(1 + jitter_tol)
  * P`` and ``1.5 * P``: jitter beyond tolerance) is **irregular**.
  :func:`validate_series` refuses irregular input with
  :class:`IrregularSeriesError`, saying where and what to do; resampling is
  explicit (:func:`resample_regular`), never silent.  The live stream does
  not stop on it: it breaks the run there and logs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import JITTER_TOL

GAP_FACTOR = 1.5
"""A step of at least this many sample periods is a gap."""

__all__ = [
    "IrregularSeriesError",
    "RegularSeries",
    "infer_period",
    "run_breaks",
    "validate_series",
    "resample_regular",
]


class IrregularSeriesError(ValueError):
    """The series is not regularly sampled; the message says where and what to do."""


def _check_tol(jitter_tol: float) -> None:
    if not 0 <= jitter_tol < GAP_FACTOR - 1:
        raise ValueError(f"jitter_tol must be in [0, {GAP_FACTOR - 1}), got {jitter_tol}")


def infer_period(times_ns) -> int:
    """Sample period in ns: the median positive step between sorted timestamps.

    Examples
    --------
    >>> infer_period([0, 10, 20, 30, 70])
    10
    """
    t = np.unique(np.asarray(times_ns, dtype=np.int64))
    if len(t) < 2:
        raise ValueError(f"need at least 2 distinct timestamps to infer a sample period, got {len(t)}")
    return int(np.median(np.diff(t)))


def run_breaks(times_ns, period_ns: float, jitter_tol: float = JITTER_TOL) -> np.ndarray:
    """Indices ``i >= 1`` where a new run starts at ``times_ns[i]``.

    A run breaks wherever the step is not within ``(1 ± jitter_tol)`` sample
    periods (a gap or an irregular step).

    Examples
    --------
    >>> run_breaks(np.array([0, 10, 20, 50, 60, 61, 71]), 10.0)
    array([3, 5])
    """
    if not period_ns > 0:
        raise ValueError(f"period_ns must be > 0, got {period_ns}")
    _check_tol(jitter_tol)
    d = np.diff(np.asarray(times_ns, dtype=np.int64))
    lo, hi = (1 - jitter_tol) * period_ns, (1 + jitter_tol) * period_ns
    return np.flatnonzero((d < lo) | (d > hi)) + 1


def step_kind(step_ns, period_ns: float) -> str:
    """``"gap"`` for a step of at least 1.5 periods, else ``"irregular"`` (for a break).

    >>> step_kind(30, 10.0), step_kind(3, 10.0)
    ('gap', 'irregular')
    """
    return "gap" if step_ns >= GAP_FACTOR * period_ns else "irregular"


@dataclass
class RegularSeries:
    """A validated series: sorted, unique, finite, split into regular runs.

    Attributes
    ----------
    times : ndarray of int64
        Timestamps in ns, strictly increasing.
    values : ndarray of float64
        Finite values.
    period_ns : int
        Sample period.
    runs : list of (int, int)
        Half-open index ranges ``[i0, i1)`` of consecutive on-grid samples.
    gaps : list of (int, int)
        ``(last time before, first time after)`` of each gap, in ns.
    n_duplicates, n_nonfinite : int
        Samples dropped at the boundary (duplicate timestamps keep the last
        value, as InfluxDB does; non-finite values become gaps).
    """

    times: np.ndarray
    values: np.ndarray
    period_ns: int
    runs: list = field(default_factory=list)
    gaps: list = field(default_factory=list)
    n_duplicates: int = 0
    n_nonfinite: int = 0

    def run_values(self) -> list[np.ndarray]:
        """The values of each run (views), ready for the detectors."""
        return [self.values[a:b] for a, b in self.runs]

    def summary(self) -> str:
        return (f"{len(self.times):,} samples, period {self.period_ns / 1e6:.6g} ms, "
                f"{len(self.runs)} run(s), {len(self.gaps)} gap(s), "
                f"{self.n_duplicates} duplicate and {self.n_nonfinite} non-finite dropped")


def _fmt_ns(t: int) -> str:
    import pandas as pd

    return pd.Timestamp(int(t), tz="UTC").isoformat()


def validate_series(times_ns, values, period_ns: float | None = None,
                    jitter_tol: float = JITTER_TOL) -> RegularSeries:
    """Validate a series once at the boundary.

    Sorts by time, drops duplicate timestamps (keeping the last value) and
    non-finite values (both counted), finds the sample period and splits the
    series into runs at gaps.

    Parameters
    ----------
    times_ns : array-like of int
        Timestamps, ns since the epoch.
    values : array-like of float
        One value per timestamp.  Strings that are not numbers raise.
    period_ns : float, optional
        The known sample period; inferred (median step) if omitted.
    jitter_tol : float, default=config.JITTER_TOL
        Steps within this fraction of the period count as on grid.

    Raises
    ------
    IrregularSeriesError
        A step is neither on grid nor a gap (e.g. 1.3 periods, or an extra
        sample half-way).  Resample explicitly with :func:`resample_regular`.
    ValueError
        Mismatched lengths, non-numeric values, fewer than 2 usable samples.

    Examples
    --------
    >>> rs = validate_series([0, 10, 20, 60, 70, 70], [1.0, 2.0, float("nan"), 4.0, 5.0, 6.0])
    >>> rs.period_ns, rs.runs, rs.gaps, rs.n_duplicates, rs.n_nonfinite
    (10, [(0, 2), (2, 4)], [(10, 60)], 1, 1)
    >>> rs.values.tolist()
    [1.0, 2.0, 4.0, 6.0]
    """
    _check_tol(jitter_tol)
    t = np.asarray(times_ns)
    if t.dtype.kind not in "iu":
        raise ValueError(f"times_ns must be integers (ns since the epoch), got dtype {t.dtype}")
    t = t.astype(np.int64, copy=False)
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("values must be numbers; found a value that is not (a string?). "
                         "Clean the source or load it with `python -m pipeline.load`, which "
                         "names the offending line") from None
    if t.ndim != 1 or v.ndim != 1 or len(t) != len(v):
        raise ValueError(f"times_ns and values must be 1-D and equally long, got shapes "
                         f"{t.shape} and {v.shape}")
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    last = np.ones(len(t), bool)
    last[:-1] = t[1:] != t[:-1]  # keep the last of equal timestamps
    n_dup = int(len(t) - last.sum())
    t, v = t[last], v[last]
    finite = np.isfinite(v)
    n_bad = int(len(v) - finite.sum())
    t, v = t[finite], v[finite]
    if len(t) < 2:
        raise ValueError(f"need at least 2 finite samples, got {len(t)}")
    if period_ns is None:
        period_ns = infer_period(t)
    if not period_ns > 0:
        raise ValueError(f"period_ns must be > 0, got {period_ns}")
    breaks = run_breaks(t, period_ns, jitter_tol)
    steps = t[breaks] - t[breaks - 1]
    irregular = breaks[steps < GAP_FACTOR * period_ns]
    if len(irregular):
        i = int(irregular[0])
        raise IrregularSeriesError(
            f"the series is not regularly sampled: {len(irregular)} step(s) are neither within "
            f"{jitter_tol:.0%} of the sample period ({period_ns / 1e6:.6g} ms) nor a gap of >= "
            f"{GAP_FACTOR} periods; the first is {(t[i] - t[i - 1]) / 1e6:.6g} ms at "
            f"{_fmt_ns(t[i])}. Resample explicitly (pipeline.series.resample_regular, or "
            f"`--resample` on the command line) or pass the right sample period.")
    bounds = [0, *breaks.tolist(), len(t)]
    runs = list(zip(bounds[:-1], bounds[1:], strict=True))
    gaps = [(int(t[i - 1]), int(t[i])) for i in breaks.tolist()]
    return RegularSeries(t, v, int(round(period_ns)), runs, gaps, n_dup, n_bad)


def resample_regular(times_ns, values, period_ns: int, max_gap_ns: int | None = None):
    """Linearly interpolate an irregular series onto a regular grid (explicit, never automatic).

    The grid starts at the first timestamp and advances by ``period_ns``.
    Grid points whose two neighbouring source samples are more than
    ``max_gap_ns`` apart (default ``3 * period_ns``) are left out, so a real
    gap stays a gap instead of becoming a straight line.

    Returns
    -------
    times : ndarray of int64
    values : ndarray of float64

    Examples
    --------
    >>> t, v = resample_regular([0, 13, 19, 30, 100], [0.0, 1.3, 1.9, 3.0, 10.0], 10)
    >>> t.tolist(), v.round(6).tolist()
    ([0, 10, 20, 30, 100], [0.0, 1.0, 2.0, 3.0, 10.0])
    """
    period_ns = int(period_ns)
    if period_ns <= 0:
        raise ValueError(f"period_ns must be > 0, got {period_ns}")
    max_gap_ns = 3 * period_ns if max_gap_ns is None else int(max_gap_ns)
    t = np.asarray(times_ns, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(v)
    t, v = t[keep], v[keep]
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if len(t) < 2:
        raise ValueError(f"need at least 2 finite samples to resample, got {len(t)}")
    grid = np.arange(t[0], t[-1] + 1, period_ns, dtype=np.int64)
    j = np.clip(np.searchsorted(t, grid, side="right"), 1, len(t) - 1)
    lo, hi = t[j - 1], t[j]
    exact = (grid == lo) | (grid == hi)
    ok = exact | (hi - lo <= max_gap_ns)
    # interpolate relative to the left neighbour: exact in int64, no float epoch loss
    frac = (grid - lo).astype(np.float64) / np.maximum(hi - lo, 1).astype(np.float64)
    out = v[j - 1] + frac * (v[j] - v[j - 1])
    return grid[ok], out[ok]
