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

import re
import time
from dataclasses import dataclass, field

import numpy as np

from .config import JITTER_TOL, MAX_TIME_NS, MIN_TIME_NS, Z_MAX_ABS

GAP_FACTOR = 1.5
"""A step of at least this many sample periods is a gap."""

__all__ = [
    "IrregularSeriesError",
    "RegularSeries",
    "MIN_TIME_NS",
    "MAX_TIME_NS",
    "parse_timestamp",
    "format_timestamp",
    "infer_period",
    "run_breaks",
    "validate_series",
    "resample_regular",
]


class IrregularSeriesError(ValueError):
    """The series is not regularly sampled; the message says where and what to do."""



TIME_FORMS = ("ISO 8601 like 2026-01-01T00:00:00Z (no zone means UTC), integer nanoseconds "
              "since the epoch, or now")
"""The accepted forms of :func:`parse_timestamp`, for messages."""

_INT_RE = re.compile(r"[+-]?[0-9]+")
_ISO_START = re.compile(r"[0-9]{4}")  # a year: rules out words (today, NaT, inf...) up front


def parse_timestamp(text: str, *, what: str = "time") -> int:
    """Parse a time given by a user: ns since the epoch (UTC), within InfluxDB's range.

    Accepted forms (leading/trailing spaces are ignored):

    * ISO 8601: ``2026-01-01T00:00:00Z``, ``2026-01-01T01:00:00+01:00``,
      ``2026-01-01 00:00:00.123456789``, ``2026-01-01``; without a zone the
      time is **UTC** (never the local zone);
    * an integer: nanoseconds since the epoch (``1767225600000000000``);
    * ``now``: the current time (``time.time_ns()``).

    Everything else raises :class:`ValueError` naming ``what``, the value and
    the accepted forms: relative words other than ``now`` (``today``,
    ``yesterday``...), ``NaT``, ``nan``, ``inf``, non-ISO layouts such as
    ``Jan 1 2026`` or ``12:00``, and times outside the range InfluxDB stores
    (:data:`MIN_TIME_NS` .. :data:`MAX_TIME_NS`, 1677-09-21 .. 2262-04-11).

    Parameters
    ----------
    text : str
        The time as typed (an ``int`` is taken as ns).
    what : str, default="time"
        What the value is, for messages (e.g. ``"--start"``).

    Examples
    --------
    >>> parse_timestamp("2026-01-01T00:00:00Z")
    1767225600000000000
    >>> parse_timestamp("2026-01-01 01:00:00.5+01:00")
    1767225600500000000
    >>> parse_timestamp("1767225600000000000")
    1767225600000000000
    >>> parse_timestamp("yesterday", what="--start")
    Traceback (most recent call last):
    ...
    ValueError: --start: cannot parse time 'yesterday'; use ISO 8601 like 2026-01-01T00:00:00Z (no zone means UTC), integer nanoseconds since the epoch, or now
    """
    if isinstance(text, (int, np.integer)) and not isinstance(text, (bool, np.bool_)):
        t = int(text)
    elif not isinstance(text, str):
        raise ValueError(f"{what}: cannot parse time {text!r} (a {type(text).__name__}); "
                         f"use {TIME_FORMS}")
    else:
        s = text.strip()
        if s.lower() == "now":
            return time.time_ns()
        if _INT_RE.fullmatch(s):
            t = int(s)
        else:
            t = _parse_iso(s, text, what)
    if not MIN_TIME_NS <= t <= MAX_TIME_NS:
        raise ValueError(_out_of_range(what, text))
    return t


def _out_of_range(what: str, text) -> str:
    return (f"{what}: time {text!r} is outside the range InfluxDB can store "
            f"({format_timestamp(MIN_TIME_NS)} .. {format_timestamp(MAX_TIME_NS)}); "
            f"use {TIME_FORMS}")


def _parse_iso(s: str, text: str, what: str) -> int:
    import pandas as pd

    bad = ValueError(f"{what}: cannot parse time {text!r}; use {TIME_FORMS}")
    if not _ISO_START.match(s):
        raise bad
    try:
        ts = pd.to_datetime(s, format="ISO8601", utc=True)
    except (ValueError, OverflowError):
        raise bad from None
    if ts is pd.NaT:
        raise bad
    try:
        return int(ts.value)  # pandas >= 2 parses beyond the ns range (other units)
    except (OverflowError, ValueError):
        raise ValueError(_out_of_range(what, text)) from None


def format_timestamp(t_ns) -> str:
    """ISO 8601 (UTC) of a time in ns since the epoch; never raises.

    ``None`` prints as ``(none)``; a value that is not a time (outside the
    int64 ns range, NaT's value, not a number) prints as given.

    Examples
    --------
    >>> format_timestamp(1767225600000000001)
    '2026-01-01T00:00:00.000000001+00:00'
    >>> format_timestamp(2**70)
    '1180591620717411303424'
    """
    if t_ns is None:
        return "(none)"
    try:
        import pandas as pd

        ts = pd.Timestamp(int(t_ns), unit="ns", tz="UTC")
        if ts is not pd.NaT:
            return ts.isoformat()
    except Exception:  # noqa: BLE001 - a formatter for messages must never raise
        pass
    try:
        return str(int(t_ns))
    except Exception:  # noqa: BLE001
        return str(t_ns)


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
        value, as InfluxDB does; NaN, inf and values beyond ``config.Z_MAX_ABS`` become gaps).
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
                f"{self.n_duplicates} duplicate and {self.n_nonfinite} non-finite or out-of-range "
                "(|x| > 1e100) dropped")


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
    finite = np.abs(v) <= Z_MAX_ABS  # NaN, inf and |x| > 1e100 (docs/extremes.md) are gaps
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
            f"{format_timestamp(t[i])}. Resample explicitly (pipeline.series.resample_regular, or "
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
