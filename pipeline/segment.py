"""Sliding segments, the sin^2 window and overlap-add.

A regular series ``x`` is cut into segments of ``segment_len`` samples,
one every ``slide_len`` samples: segment ``i`` covers the half-open sample
range ``[i * slide_len, i * slide_len + segment_len)``.

* :func:`sliding_segments` returns a zero-copy, read-only view (numpy's
  ``sliding_window_view`` sliced with a stride); no sample is copied.
* The tail that does not fill a whole segment is **not** included.
  :func:`n_segments` says how many segments fit and :func:`tail_start` says
  where the next segment of the same grid would start: a streaming caller
  keeps ``x[tail_start(...):]`` and prepends it to the next chunk to continue
  the grid without gaps or duplicates.
* :func:`sin2_window` is the periodic window ``sin(pi * n / L) ** 2``.  For
  an even ``L`` it is a partition of unity at 50 % overlap
  (``w[n] + w[n + L/2] == 1``), so overlap-adding windowed segments cut at
  ``slide_len = L/2`` gives the series back, except in the first and last
  half segment, which only one window covers.
* :func:`overlap_add` sums segments back onto the sample grid.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "sliding_segments",
    "n_segments",
    "tail_start",
    "sin2_window",
    "overlap_add",
]


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_lengths(segment_len, slide_len) -> tuple[int, int]:
    segment_len = _check_int("segment_len", segment_len)
    slide_len = _check_int("slide_len", slide_len)
    if slide_len > segment_len:
        raise ValueError(
            f"slide_len must be in [1, segment_len={segment_len}] (segments must touch or "
            f"overlap), got {slide_len}"
        )
    return segment_len, slide_len


def _as_series(x, name: str = "x") -> np.ndarray:
    """``x`` as a 1-D finite float64 array; no copy if it already is one."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D array of numbers, got {type(x).__name__}: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one regular run), got an array of shape {arr.shape}")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(arr.size - np.count_nonzero(finite))
        first = int(np.argmin(finite))
        raise ValueError(
            f"{name} contains {bad} non-finite value(s) (NaN or inf), the first at index {first}; "
            "split the series into runs at gaps (pipeline.series.validate_series) instead"
        )
    return arr


def n_segments(n_samples: int, segment_len: int, slide_len: int) -> int:
    """Number of whole segments in a series of ``n_samples`` samples.

    Parameters
    ----------
    n_samples : int
        Length of the series (>= 0).
    segment_len : int
        Samples per segment (>= 1).
    slide_len : int
        Samples between segment starts, in ``[1, segment_len]``.

    Returns
    -------
    int
        ``(n_samples - segment_len) // slide_len + 1``, or 0 if the series is
        shorter than one segment.

    Examples
    --------
    >>> n_segments(10, 4, 2)
    4
    >>> n_segments(3, 4, 2)
    0
    """
    n_samples = _check_int("n_samples", n_samples, minimum=0)
    segment_len, slide_len = _check_lengths(segment_len, slide_len)
    if n_samples < segment_len:
        return 0
    return (n_samples - segment_len) // slide_len + 1


def tail_start(n_samples: int, segment_len: int, slide_len: int) -> int:
    """Index where the next segment of the grid would start.

    ``x[tail_start(len(x), L, s):]`` is the tail a streaming caller must keep
    and prepend to the next chunk so that segmentation continues on the same
    grid (no gap, no duplicate segment).  Samples from
    ``(n_segments - 1) * s + L`` on are covered by no segment at all; with
    overlapping segments (``s < L``) the kept tail also holds the last
    ``L - s`` samples of the last segment, which the next segment needs.

    Parameters
    ----------
    n_samples, segment_len, slide_len : int
        As in :func:`n_segments`.

    Returns
    -------
    int
        ``n_segments(n_samples, segment_len, slide_len) * slide_len``.

    Examples
    --------
    >>> tail_start(11, 4, 2)  # segments start at 0, 2, 4, 6; the next at 8
    8
    >>> tail_start(3, 4, 2)  # no whole segment: keep everything
    0
    """
    return n_segments(n_samples, segment_len, slide_len) * int(slide_len)


def sliding_segments(x, segment_len: int, slide_len: int) -> np.ndarray:
    """Zero-copy view of the overlapping segments of a 1-D series.

    Parameters
    ----------
    x : array_like of shape (n,)
        One regular run of finite values.  A float64 array is not copied.
    segment_len : int
        Samples per segment (>= 1).
    slide_len : int
        Samples between segment starts, in ``[1, segment_len]``.

    Returns
    -------
    ndarray of shape (n_segments(n, segment_len, slide_len), segment_len)
        Read-only view: row ``i`` is ``x[i*slide_len : i*slide_len + segment_len]``.
        The incomplete tail is not included (see :func:`tail_start`).

    Raises
    ------
    ValueError
        If ``x`` is not 1-D, holds NaN or inf, or is shorter than one segment,
        or if the lengths are out of range.

    Examples
    --------
    >>> x = np.arange(9.0)
    >>> s = sliding_segments(x, 4, 2)
    >>> s.shape, np.shares_memory(s, x)
    ((3, 4), True)
    >>> s[-1].tolist()  # sample 8 is the tail
    [4.0, 5.0, 6.0, 7.0]
    """
    segment_len, slide_len = _check_lengths(segment_len, slide_len)
    arr = _as_series(x)
    if arr.size < segment_len:
        raise ValueError(
            f"x is too short: segment_len={segment_len} needs at least {segment_len} samples, "
            f"got {arr.size}"
        )
    return sliding_window_view(arr, segment_len)[::slide_len]


def sin2_window(segment_len: int) -> np.ndarray:
    """Periodic sin^2 window ``w[n] = sin(pi * n / L) ** 2``, ``n = 0 .. L-1``.

    For an even ``L`` it is a partition of unity at 50 % overlap:
    ``w[n] + w[n + L // 2] == 1`` (to rounding), so windowed segments cut at
    ``slide_len = L // 2`` overlap-add back to the signal.  An odd ``L``
    gives a valid taper but no such partition; the K-Means reconstructor
    therefore requires an even ``segment_len``.

    Parameters
    ----------
    segment_len : int
        Window length ``L`` (>= 2).

    Returns
    -------
    ndarray of shape (segment_len,)

    Examples
    --------
    >>> w = sin2_window(4)
    >>> np.round(w, 12).tolist()
    [0.0, 0.5, 1.0, 0.5]
    >>> bool(np.allclose(w[:2] + w[2:], 1.0))
    True
    """
    segment_len = _check_int("segment_len", segment_len, minimum=2)
    return np.sin(np.pi * np.arange(segment_len) / segment_len) ** 2


def overlap_add(segments, slide_len: int, n_samples: int) -> np.ndarray:
    """Sum segments back onto a sample grid: the inverse of segmentation.

    ``out[i*slide_len : i*slide_len + L] += segments[i]`` for every row ``i``;
    samples that no segment covers are 0.

    Parameters
    ----------
    segments : array_like of shape (m, L)
    slide_len : int
        Samples between segment starts, in ``[1, L]``.
    n_samples : int
        Length of the output; must be >= ``(m - 1) * slide_len + L``.

    Returns
    -------
    ndarray of shape (n_samples,), float64

    Examples
    --------
    >>> overlap_add(np.ones((3, 4)), 2, 9).tolist()
    [1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 0.0]
    """
    seg = np.asarray(segments, dtype=np.float64)
    if seg.ndim != 2:
        raise ValueError(f"segments must be 2-D (n_segments, segment_len), got shape {seg.shape}")
    m, seg_len = seg.shape
    if seg_len < 1:
        raise ValueError(f"segments must have at least 1 column, got shape {seg.shape}")
    seg_len, slide_len = _check_lengths(seg_len, slide_len)
    n_samples = _check_int("n_samples", n_samples, minimum=0)
    needed = (m - 1) * slide_len + seg_len if m else 0
    if n_samples < needed:
        raise ValueError(
            f"n_samples must be >= (m - 1) * slide_len + segment_len = {needed} for {m} segments "
            f"of {seg_len} at slide {slide_len}, got {n_samples}"
        )
    out = np.zeros(n_samples)
    if m == 0:
        return out
    if seg_len % slide_len == 0:
        # each segment is seg_len // slide_len blocks of slide_len samples:
        # block j of every segment lands on a contiguous, non-overlapping strip
        for j in range(seg_len // slide_len):
            lo = j * slide_len
            strip = out[lo : lo + m * slide_len].reshape(m, slide_len)
            strip += seg[:, lo : lo + slide_len]
    else:
        idx = (np.arange(m)[:, None] * slide_len + np.arange(seg_len)).ravel()
        out += np.bincount(idx, weights=seg.ravel(), minlength=n_samples)
    return out
