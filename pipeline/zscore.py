"""Rolling z-score detector: streaming state and vectorized twin, with a streak guard.

This is the Plexus tutorial's temperature detector (a 15-sample window at a
2 s cadence, ``|z| > 3`` for 3 consecutive samples emits
``temperature.zscore``) with its mistakes fixed (see ``docs/zscore.md``):

1. **The current sample was inside its own baseline.**  The tutorial took the
   mean and sample std (``ddof=1``) of the last 15 samples *including* the
   one being scored.  Then ``|z| <= (n - 1) / sqrt(n)`` always (Samuelson's
   bound with ``ddof=1``): 3.61 for ``n = 15``.  The tutorial's printed
   ``z = 5.04`` is impossible, and a spike of any size barely reaches 3.6.
   Here each sample is scored against the ``window`` finite samples *before*
   it; a spike gets the large ``z`` it deserves.
2. **A zero std silently returned ``z = 0``.**  Here the std is floored at
   ``std_floor + EPS_STD * max(1, |mean|)``: a flat signal scores 0 and a
   step after a flat stretch scores a large *finite* ``z``.
3. **An alert flapped on and off with the noise.**  Here an alert turns on
   after ``streak`` consecutive samples with ``|z| > threshold`` and stays on
   until the first sample with ``|z| <= resolve`` (hysteresis).

A fourth trap comes with scoring against the previous window: the first
outlier of a level shift enters the next baselines and inflates their std,
so a step of any size gives a streak of 2 at most: the tutorial's streak
guard can never fire on a level shift or a 3-sample spike.  ``lag`` leaves
that many samples between the baseline and the scored sample; its default,
``streak - 1``, judges every streak against a baseline none of its samples
is part of, so a step or a spike of 3 samples alerts (``lag=0`` restores
the plain previous-window semantics).

Sign convention: ``z`` is signed (positive above the baseline); higher
``|z|`` is more anomalous, and the emitted score is ``|z|`` while an alert is
on, 0 otherwise.  NaN in, NaN out: a non-finite sample gets ``z = NaN``, is
not added to the baseline, resets the streak and ends an alert.  A NaN never
raises an alert.

Extreme magnitudes: a finite sample with ``|x| > config.Z_MAX_ABS`` (1e100)
is treated exactly like NaN (and counted in :attr:`RollingZScore.n_extreme`),
so no square or sum of squares can overflow and any finite number is scored
or refused without an exception.  Subnormal numbers are ordinary samples.
The parameters are bounded too: ``window`` and ``lag`` at most
``config.Z_MAX_WINDOW`` (1,000,000), ``std_floor`` at most ``Z_MAX_ABS``.  "Above" a limit ``v`` means ``|z| > v + 1e-9 * max(1, v)``,
so that exact ties (common with quantized readings) decide the same way in
every implementation.

Numerics: both implementations work on deviations from a local reference
value, so adding 1e8 to the data changes nothing, and each bounds its own
rounding error.  :class:`RollingZScore` keeps a ring buffer with rolling sums
and rebuilds them exactly (``math.fsum``) from the ring whenever the
accumulated rounding could exceed 1e-10 of the variance (and at least every
``64 * window`` updates), so error never accumulates over a long stream.
:func:`rolling_zscore` uses blocked prefix sums (one complex ``cumsum`` for
the sums of ``d`` and ``d**2``) anchored per block, and recomputes with an
exact two-pass formula every window whose error bound is too large.  Both
agree to ~1e-10.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from . import config

__all__ = [
    "ZScoreResult",
    "ZScoreBatch",
    "RollingZScore",
    "rolling_zscore",
    "streak_guard",
]

_EPS = float(np.finfo(np.float64).eps)
_TOL = 1e-10
"""Relative rounding-error budget on the window variance (and on the numerator
relative to the std) before a rolling result is recomputed exactly."""
_KACC = _TOL / (4.0 * _EPS)
_CYCLES = 64
"""The streaming sums are rebuilt from the ring at least every this many
passes over it (every ``64 * window`` updates), whatever the error bound says."""
_BLOCK = 128
"""Outputs per prefix-sum block of the vectorized kernel (at least ``window``)."""
_CHUNK = 1 << 14
_BLOCKED_MAX_WINDOW = 1 << 15
"""Largest window for the blocked prefix-sum kernel.  Its rounding-error bound
grows like ``eps * window**2``, so from about 56,000 samples on every output
fails the ``_TOL`` test and is recomputed in O(window) (measured: 4.7 s for
120k samples at window 60,000, quadratic beyond).  Larger windows are scored
by the streaming recurrence instead (O(1) per sample, about 2-3 us)."""
"""Outputs per cache-sized chunk of the vectorized kernel."""
_FEW_ONSETS = 256
"""Up to this many alert onsets in a batch, each alert's end is found by a
short forward scan instead of run-length analysis of all ``|z| > resolve``."""
_TIE = 1e-9
"""``|z|`` counts as above ``threshold`` (or ``resolve``) only beyond
``threshold + _TIE * max(1, threshold)``: exact ties (common with quantized
readings, e.g. ``z = -1.5`` exactly for three equal values and one other, or
``z = 0`` exactly) then decide the same way in every implementation, whatever
their last-bit rounding (they agree to 1e-10 relative to ``max(1, |z|)``)."""
_NAN = float("nan")
_MAX_ABS = config.Z_MAX_ABS


class ZScoreResult(NamedTuple):
    """One sample's result from :meth:`RollingZScore.update`."""

    z: float
    """Signed z-score (NaN during warm-up and for a non-finite sample)."""
    streak: int
    """Consecutive samples with ``|z| > threshold`` ending here (0 otherwise)."""
    alert: bool
    """True while the alert is on (streak guard plus hysteresis)."""
    emitted: float
    """``|z|`` while the alert is on, else 0.0 (the tutorial's ``temperature.zscore``)."""


class ZScoreBatch(NamedTuple):
    """Per-sample arrays, the batch form of :class:`ZScoreResult`."""

    z: np.ndarray
    """float64, signed."""
    streak: np.ndarray
    """int64."""
    alert: np.ndarray
    """bool."""
    emitted: np.ndarray
    """float64, ``|z|`` where ``alert`` else 0.0."""


# --------------------------------------------------------------------------
# parameter checks
# --------------------------------------------------------------------------
def _check_int(name, value, lo, hi=None, hi_name=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi_name or hi}]"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value


def _check_float(name, value, lo=None, lo_open=False, hi=None, hi_open=False, hi_name=None):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    bad = not math.isfinite(v)
    if lo is not None:
        bad = bad or (v <= lo if lo_open else v < lo)
    if hi is not None:
        bad = bad or (v >= hi if hi_open else v > hi)
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else (hi_name or f"{hi:g}")
        raise ValueError(f"{name} must be a finite number in {left}{lo_s}, {hi_s}{right}, got {value!r}")
    return v


def _check_guard(threshold, streak, resolve):
    threshold = _check_float("threshold", threshold, lo=0.0, lo_open=True)
    streak = _check_int("streak", streak, 1)
    resolve = _check_float("resolve", resolve, lo=0.0, hi=threshold, hi_open=True,
                           hi_name=f"threshold={threshold:g}")
    return threshold, streak, resolve


def _check_std_floor(std_floor):
    return _check_float("std_floor", std_floor, lo=0.0, hi=config.Z_MAX_ABS)


def _check_params(window, min_periods, threshold, streak, resolve, std_floor, lag):
    window = _check_int("window", window, 2, config.Z_MAX_WINDOW)
    min_periods = _check_int("min_periods", min_periods, 2, window, f"window={window}")
    threshold, streak, resolve = _check_guard(threshold, streak, resolve)
    std_floor = _check_std_floor(std_floor)
    lag = streak - 1 if lag is None else _check_int("lag", lag, 0, config.Z_MAX_WINDOW)
    return window, min_periods, threshold, streak, resolve, std_floor, lag


# --------------------------------------------------------------------------
# streak guard with hysteresis (vectorized)
# --------------------------------------------------------------------------
def _ranges(starts, stops):
    """Concatenation of ``arange(a, b)`` for each pair (all ``b > a``)."""
    lengths = stops - starts
    total = int(lengths.sum())
    offs = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(total, dtype=np.int64) + offs


def _guard(z, nr, threshold, k, resolve, carry_streak=0, carry_alert=False, hit=None):
    """Streak and hysteresis, continuing a state; returns ``(streak, alert, emitted)``.

    ``nr`` are the sorted indices where ``|z| > resolve`` (NaN excluded): the
    only places where a streak or an alert can be non-zero, so the work
    beyond allocating the outputs is proportional to ``nr.size``.  ``hit``
    (optional) is ``|z[nr]| > threshold``.
    """
    n = z.size
    streak = np.zeros(n, dtype=np.int64)
    alert = np.zeros(n, dtype=bool)
    emitted = np.zeros(n, dtype=np.float64)
    if nr.size == 0:
        return streak, alert, emitted
    # hits (|z| > threshold) are a subset of nr; streak = position in a run of hits
    h = nr[np.abs(z[nr]) > _above_limit(threshold) if hit is None else hit]
    if h.size:
        pos = np.arange(h.size, dtype=np.int64)
        first = np.empty(h.size, dtype=bool)
        first[0] = True
        np.not_equal(np.diff(h), 1, out=first[1:])
        run0 = np.maximum.accumulate(np.where(first, pos, 0))
        s = pos - run0 + 1
        if h[0] == 0 and carry_streak:
            s[run0 == 0] += carry_streak
        streak[h] = s
        onsets = h[s >= k]
    else:
        onsets = h
    if onsets.size == 0 and not carry_alert:
        return streak, alert, emitted
    if onsets.size <= _FEW_ONSETS:  # scan forward from each onset to its resolve
        starts = onsets.tolist()
        if carry_alert:
            starts.insert(0, 0)
        end = 0
        for a in starts:
            if a < end:  # already inside this alert
                continue
            end = _next_resolve(z, a, resolve)
            alert[a:end] = True
            np.abs(z[a:end], out=emitted[a:end])
        return streak, alert, emitted
    # runs of consecutive indices above `resolve`: an alert lasts to its run's end
    brk = np.flatnonzero(np.diff(nr) != 1) + 1
    run_start = nr[np.concatenate(([0], brk))]
    run_end = nr[np.concatenate((brk - 1, [nr.size - 1]))] + 1  # exclusive
    rid = np.searchsorted(run_start, onsets, side="right") - 1
    keep = np.ones(rid.size, dtype=bool)
    keep[1:] = rid[1:] != rid[:-1]  # first onset of each run
    a_start, a_rid = onsets[keep], rid[keep]
    if carry_alert and run_start[0] == 0:  # an alert carried in holds through the first run
        if a_rid.size and a_rid[0] == 0:
            a_start = a_start.copy()
            a_start[0] = 0
        else:
            a_start = np.concatenate(([0], a_start))
            a_rid = np.concatenate(([0], a_rid))
    if a_start.size:
        idx = _ranges(a_start, run_end[a_rid])
        alert[idx] = True
        emitted[idx] = np.abs(z[idx])
    return streak, alert, emitted


def _above_limit(v):
    """What ``|z|`` must exceed to count as above ``v`` (see ``_TIE``)."""
    return v + _TIE * max(1.0, v)


def _next_resolve(z, a, resolve):
    """First index >= ``a`` where ``|z| <= resolve`` or ``z`` is NaN (or ``z.size``)."""
    resolve = _above_limit(resolve)
    n = z.size
    step = 64
    while a < n:
        seg = z[a:a + step]
        i = np.flatnonzero(~((seg > resolve) | (seg < -resolve)))
        if i.size:
            return a + int(i[0])
        a += step
        step *= 2
    return n


def _above(z, resolve):
    """Sorted indices where ``|z| > resolve`` (NaN excluded)."""
    return np.flatnonzero(np.abs(z) > _above_limit(resolve))


def streak_guard(z, threshold=config.Z_THRESHOLD, streak=config.Z_STREAK,
                 resolve=config.Z_RESOLVE) -> ZScoreBatch:
    """Apply the streak guard and hysteresis to a 1-D array of z-scores.

    ``streak[i]`` counts the consecutive samples with ``|z| > threshold``
    ending at ``i`` (0 where ``|z| <= threshold`` or ``z`` is NaN).  The alert
    turns on where ``streak >= streak`` (the parameter), stays on while
    ``|z| > resolve`` and turns off at the first sample with
    ``|z| <= resolve`` or a NaN.  Usable on any score, e.g. a column of
    :func:`pipeline.baselines.fleet_zscore`.

    Parameters
    ----------
    z : array_like of float, shape (n,)
        Signed or absolute scores; NaN allowed.
    threshold : float, default=config.Z_THRESHOLD
        ``|z|`` above this counts toward a streak; > 0.
    streak : int, default=config.Z_STREAK
        Consecutive samples above ``threshold`` that turn the alert on; >= 1.
    resolve : float, default=config.Z_RESOLVE
        The alert turns off at the first ``|z| <= resolve``; in [0, threshold).

    Returns
    -------
    ZScoreBatch
        ``z`` (the input as float64), ``streak``, ``alert``, ``emitted``.

    Examples
    --------
    >>> r = streak_guard([0, 4, 4, 0, 4, 4, 4, 2.5, 1.0, 5.0])
    >>> r.streak.tolist()
    [0, 1, 2, 0, 1, 2, 3, 0, 0, 1]
    >>> r.alert.astype(int).tolist()
    [0, 0, 0, 0, 0, 0, 1, 1, 0, 0]
    >>> r.emitted.tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 4.0, 2.5, 0.0, 0.0]
    """
    threshold, streak, resolve = _check_guard(threshold, streak, resolve)
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 1:
        raise ValueError(f"z must be 1-D, got shape {z.shape}")
    s, a, e = _guard(z, _above(z, resolve), threshold, streak, resolve)
    return ZScoreBatch(z, s, a, e)


# --------------------------------------------------------------------------
# vectorized rolling z-score kernel
# --------------------------------------------------------------------------
def _direct(src, starts, counts, w, lag, std_floor):
    """Exact two-pass z of the values ``src[s + w + lag]`` against the windows
    ``src[s:s+w]`` (of which the last ``counts`` values are valid).  O(w) each."""
    out = np.empty(starts.size)
    ar = np.arange(w)
    rows = max(1, (1 << 18) // w)
    for r0 in range(0, starts.size, rows):
        j = starts[r0:r0 + rows]
        cnt = counts[r0:r0 + rows]
        n = cnt.astype(np.float64)
        win = src[j[:, None] + ar]
        valid = ar >= (w - cnt)[:, None]
        m0 = np.where(valid, win, 0.0).sum(axis=1) / n
        dev = np.where(valid, win - m0[:, None], 0.0)
        s1 = dev.sum(axis=1)
        md = s1 / n
        m2 = np.einsum("ij,ij->i", dev, dev) - s1 * md
        s = np.sqrt(np.maximum(m2, 0.0) / (n - 1))
        fl = std_floor + config.EPS_STD * np.maximum(1.0, np.abs(m0 + md))
        out[r0:r0 + rows] = ((src[j + (w + lag)] - m0) - md) / np.maximum(s, fl)
    return out


def _block_sums(ext, w, lag):
    """The blocked kernel's sums for blocks ``ext`` (``nb x (B + w + lag)``, ``B`` outputs each).

    Per block: a reference near its mean (``ref``), prefix sums of the deviations
    ``d = ext - ref`` and of ``d**2`` over its ``K = B + w`` window values (``p1``,
    ``p2``; ``tot = p2[:, K]``), each window's mean deviation ``md``, the numerators
    ``num = d[w + lag:] - md`` and ``m2 = (w - 1) * variance`` of every window.  Shared by
    :func:`_blocked` and the fleet blocks (:mod:`pipeline.detectors.block`), which must do
    the same operations in the same order to give the same bits.
    """
    nb, width = ext.shape
    K = width - lag
    B = K - w
    sub = ext[:, ::16]
    ref = np.add.reduce(sub, axis=1)
    ref /= sub.shape[1]
    # one complex cumsum gives both prefix sums (of d and d**2) for the price of one
    dd = np.empty((nb, K + lag), np.complex128)
    d = dd.real
    np.subtract(ext, ref[:, None], out=d)
    np.multiply(d[:, :K], d[:, :K], out=dd.imag[:, :K])
    p = np.empty((nb, K + 1), np.complex128)
    p[:, 0] = 0.0
    np.cumsum(dd[:, :K], axis=1, out=p[:, 1:])
    p1 = p.real
    p2 = p.imag
    s1 = p1[:, w:K] - p1[:, :B]  # (real views: complex ufuncs are not vectorized)
    m2 = p2[:, w:K] - p2[:, :B]
    tot = p2[:, K]
    md = s1 / w
    num = d[:, w + lag:] - md
    s1 *= md
    m2 -= s1  # (w - 1) * variance
    return ref, p1, p2, tot, md, num, m2


def _blocked(src, s0, nb, w, lag, std_floor, out, ncols=None):
    """z of ``src[s + w + lag]`` against ``src[s:s+w]`` for ``nb * B`` window
    starts ``s`` from ``s0``, written into ``out``, by blocked prefix sums.

    Each block of ``B`` outputs works on deviations from a reference near its
    mean, with prefix sums over its ``K = B + w`` window values.  The rounding error
    of a prefix sum is at most ``eps * K * max|partial sum|``.  A cheap
    screen flags the windows whose std is small enough for that bound (or the
    std floor) to matter; for them the bound is computed exactly, the floor
    applied, and where the bound exceeds ``_TOL`` of the window variance (or
    of the std, for the mean) the window is redone by :func:`_direct`.
    Only the first ``ncols`` outputs of a block are needed when given (the
    padded last block): the others are not refined.
    Runs under ``np.errstate(divide="ignore", invalid="ignore")``.
    """
    B = max(_BLOCK, w)
    K = B + w
    ext = np.ndarray((nb, K + lag), np.float64, src, s0 * 8, (B * 8, 8))
    ref, p1, p2, tot, md, num, m2 = _block_sums(ext, w, lag)
    # screen with one bound for the whole chunk: |P1| <= sqrt(K * tot), max |md|
    c2 = 2.0 * _EPS * (K + 2)
    tmax = float(tot.max())
    e1 = c2 * math.sqrt(K * tmax)
    mdm = max(float(md.max()), -float(md.min()))
    e2 = c2 * tmax + 2.0 * mdm * e1
    fl = std_floor + config.EPS_STD * max(1.0, float(np.abs(ref).max()) + mdm)
    lim = max(e2 / (_TOL * (w - 1)), (e1 / (w * _TOL)) ** 2, fl * fl)
    lim *= w - 1
    screen = not float(m2.min()) >= lim
    if screen:  # again per block, with each block's actual max |P1| and max |md|
        e1b = c2 * np.maximum(p1.max(axis=1), -p1.min(axis=1))
        mdb = np.maximum(md.max(axis=1), -md.min(axis=1))
        e2b = c2 * tot + 2.0 * mdb * e1b
        flb = std_floor + config.EPS_STD * np.maximum(1.0, np.abs(ref) + mdb)
        limb = np.maximum(np.maximum(e2b / (_TOL * (w - 1)), (e1b / (w * _TOL)) ** 2), flb * flb)
        cand = ~(m2 >= (limb * (w - 1))[:, None])
        if ncols is not None:
            cand[:, ncols:] = False  # padding: never read, never worth an O(w) refinement
        screen = bool(cand.any())
    m2 *= 1.0 / (w - 1)
    s = np.sqrt(m2, out=m2)  # NaN where m2 < 0: those are candidates
    zb = out.reshape(nb, B)
    np.divide(num, s, out=zb)
    if not screen:
        return
    _refine(zb, num, s, cand, p1, p2, md, ref, c2, w, lag, std_floor, src, s0, B)


def _refine(zb, num, s, cand, p1, p2, md, ref, c2, w, lag, std_floor, src, start, stride):
    """Fix the flagged windows ``cand`` of blocked z-scores ``zb`` in place.

    Each candidate gets its rounding bound from the prefix sums up to its
    window's end (so windows before a huge value in the block are not
    penalized): ``|dS1| <= e1``, ``|dS2| <= c2 * P2[end]``,
    ``|d(S1 * md)| <= 2 |md| e1``.  Where the floored std is below the bound,
    the exact two-pass :func:`_direct` on ``src`` recomputes it (row ``r``,
    column ``c`` starts at ``start + r * stride + c``).  Shared by
    :func:`_blocked` and the fleet blocks of :mod:`pipeline.detectors.block`.
    """
    r, c = np.nonzero(cand)
    rows, inv = np.unique(r, return_inverse=True)
    end = c + w
    e1 = c2 * np.maximum.accumulate(np.abs(p1[rows]), axis=1)[inv, end]
    mdc = md[r, c]
    e2 = c2 * p2[r, end] + 2.0 * np.abs(mdc) * e1
    thr = np.sqrt(np.maximum(e2 / (_TOL * (w - 1)), (e1 / (w * _TOL)) ** 2))
    fl = std_floor + config.EPS_STD * np.maximum(1.0, np.abs(ref[r] + mdc))
    sc = np.fmax(s[r, c], fl)
    zb[r, c] = num[r, c] / sc
    bad = sc < thr
    if bad.any():
        rb, cb = r[bad], c[bad]
        zb[rb, cb] = _direct(src, start + rb * stride + cb, np.full(rb.size, w), w, lag,
                             std_floor)


class _Marks:
    """Collects, chunk by chunk, the indices where ``|z| > resolve`` and
    whether ``|z| > threshold`` there (the input of :func:`_guard`)."""

    __slots__ = ("resolve", "threshold", "nr", "hit")

    def __init__(self, resolve, threshold):
        self.resolve = _above_limit(resolve)
        self.threshold = _above_limit(threshold)
        self.nr = []
        self.hit = []

    def add(self, z, off):
        r = self.resolve
        i = np.flatnonzero((z > r) | (z < -r))
        a = z[i]
        t = self.threshold
        self.hit.append((a > t) | (a < -t))
        self.nr.append(i + off)

    def arrays(self):
        if not self.nr:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=bool)
        return np.concatenate(self.nr), np.concatenate(self.hit)


def _span(src, s0, s1, w, lag, std_floor, out, marks, off):
    """z for window starts ``s0 <= s < s1`` of ``src`` into ``out[s - s0]``, in
    cache-sized chunks, marking output ``s - s0`` as index ``off + s - s0``."""
    B = max(_BLOCK, w)
    nfull = (s1 - s0) // B
    bpc = max(1, _CHUNK // B)
    for b0 in range(0, nfull, bpc):
        nbk = min(bpc, nfull - b0)
        o = out[b0 * B:(b0 + nbk) * B]
        _blocked(src, s0 + b0 * B, nbk, w, lag, std_floor, o)
        marks.add(o, off + b0 * B)
    rest = (s1 - s0) - nfull * B
    if rest:
        a = s0 + nfull * B
        g = w + lag
        tail = np.empty(B + g)
        tail[:rest + g] = src[a:s1 + g]
        tail[rest + g:] = src[s1 + g - 1]
        o = np.empty(B)
        _blocked(tail, 0, 1, w, lag, std_floor, o, rest)
        out[nfull * B:] = o[:rest]
        marks.add(out[nfull * B:], off + nfull * B)


def _kernel(f, buf, w, lag, minp, std_floor, marks):
    """z of every finite ``f[i]`` against the up to ``w`` finite values before
    it, skipping the ``lag`` newest (the stored values ``buf`` then ``f``),
    NaN while fewer than ``minp``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _kernel_body(f, buf, w, lag, minp, std_floor, marks)


def _kernel_body(f, buf, w, lag, minp, std_floor, marks):
    F = f.size
    L0 = len(buf)
    g = w + lag  # values kept: the baseline and the lag
    z = np.empty(F)
    # head: outputs i < g, whose windows reach into buf (or the warm-up)
    nh = min(F, g)
    if nh:
        pad = g - L0
        gh = np.empty(g + nh)
        gh[pad:g] = buf
        gh[g:] = f[:nh]
        gh[:pad] = gh[pad]
        full0 = min(nh, pad)  # outputs before full0 have a partial window
        if full0:
            i = np.arange(full0)
            counts = np.clip(L0 + i - lag, 0, w)
            ok = counts >= minp
            z[:full0] = np.nan
            if ok.any():
                z[i[ok]] = _direct(gh, i[ok], counts[ok], w, lag, std_floor)
            marks.add(z[:full0], 0)
        if full0 < nh:
            _span(gh, full0, nh, w, lag, std_floor, z[full0:nh], marks, full0)
    # main: outputs i >= g, windows f[i-g:i-lag], straight from f (no copy)
    if F > g:
        _span(f, 0, F - g, w, lag, std_floor, z[g:], marks, g)
    return z


def _usable(x):
    """``|x| <= Z_MAX_ABS`` (False for NaN and inf): the samples a detector scores."""
    return (x >= -_MAX_ABS) & (x <= _MAX_ABS)


def _all_usable(x) -> bool:
    """Every sample usable (two passes, no temporary; NaN makes max/min NaN)."""
    return x.size == 0 or (float(x.max()) <= _MAX_ABS and float(x.min()) >= -_MAX_ABS)


def _n_extreme(x, usable) -> int:
    """Finite samples refused for their magnitude."""
    return int(np.count_nonzero(~usable & np.isfinite(x)))


def _run(x, buf, w, lag, minp, std_floor, resolve, threshold):
    """z for all of ``x`` (non-finite or beyond ``Z_MAX_ABS`` -> NaN), the marks
    for :func:`_guard` (``nr``, ``hit``), the new buffer (the last ``w + lag``
    usable values) and the number of finite samples refused for their magnitude."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {x.shape}")
    if w > _BLOCKED_MAX_WINDOW:
        return _run_streaming(x, buf, w, lag, minp, std_floor, resolve, threshold)
    marks = _Marks(resolve, threshold)
    n_ext = 0
    if _all_usable(x):
        f = np.ascontiguousarray(x)
        z = _kernel(f, buf, w, lag, minp, std_floor, marks)
        nr, hit = marks.arrays()
    else:
        fin = _usable(x)
        n_ext = _n_extreme(x, fin)
        f = x[fin]
        zf = _kernel(f, buf, w, lag, minp, std_floor, marks)
        z = np.full(x.size, np.nan)
        z[fin] = zf
        nr, hit = marks.arrays()
        nr = np.flatnonzero(fin)[nr]
    g = w + lag
    if f.size >= g:
        new_buf = f[-g:].tolist()
    else:
        new_buf = (list(buf) + f.tolist())[-g:]
    return z, nr, hit, new_buf, n_ext


def _run_streaming(x, buf, w, lag, minp, std_floor, resolve, threshold):
    """:func:`_run` for windows beyond the blocked kernel: the streaming
    recurrence of :meth:`RollingZScore.update`, one sample at a time."""
    det = RollingZScore(w, minp, threshold, 1, resolve, std_floor, lag)
    det._set_state(buf, 0, False)
    update = det.update
    z = np.fromiter((update(v).z for v in x.tolist()), dtype=np.float64, count=x.size)
    nr = _above(z, resolve)
    hit = np.abs(z[nr]) > _above_limit(threshold)
    return z, nr, hit, det._ring(), det.n_extreme


def rolling_zscore(x, window=config.Z_WINDOW, min_periods=config.Z_MIN_PERIODS,
                   threshold=config.Z_THRESHOLD, streak=config.Z_STREAK,
                   resolve=config.Z_RESOLVE, std_floor=0.0, lag=None) -> ZScoreBatch:
    """Rolling z-score of each sample against the samples before it (vectorized).

    The batch twin of :class:`RollingZScore`: equal to feeding ``x`` to a
    fresh ``RollingZScore(...).update`` one sample at a time (to ~1e-10).

    ``z[i] = (x[i] - mean(prev)) / max(std(prev, ddof=1), std_floor +
    EPS_STD * max(1, |mean(prev)|))`` where ``prev`` holds the up to
    ``window`` finite samples before ``i`` (skipping the ``lag`` most recent
    ones); ``z[i]`` is NaN while ``prev`` holds fewer than ``min_periods``
    samples and where ``x[i]`` is not finite or ``|x[i]| > config.Z_MAX_ABS``
    (such samples never enter a baseline; ``np.abs(x) > Z_MAX_ABS`` counts
    them).

    Parameters
    ----------
    x : array_like of float, shape (n,)
        Samples in time order; NaN/inf (and ``|x| > Z_MAX_ABS``) mark missing
        samples.
    window : int, default=config.Z_WINDOW
        Baseline length in samples; in [2, config.Z_MAX_WINDOW].
    min_periods : int, default=config.Z_MIN_PERIODS
        Baseline samples needed before a z is produced; in [2, window].
    threshold : float, default=config.Z_THRESHOLD
        ``|z|`` above this counts toward a streak; > 0.
    streak : int, default=config.Z_STREAK
        Consecutive samples above ``threshold`` that turn the alert on; >= 1.
    resolve : float, default=config.Z_RESOLVE
        An active alert turns off at the first ``|z| <= resolve`` (or NaN);
        in [0, threshold).
    std_floor : float, default=0.0
        Absolute std floor (in the data's unit), added to the relative floor
        ``EPS_STD * max(1, |mean|)``; in [0, config.Z_MAX_ABS].
    lag : int or None, default=None
        Finite samples between the baseline and the scored sample; in
        [0, config.Z_MAX_WINDOW]; None means ``streak - 1``, so a streak is
        judged against a baseline
        none of its samples is part of.  With ``lag=0`` the first outlier of
        a level shift enters the baseline of the second and inflates its std,
        so a step of any size gives a streak of 2 at most.

    Returns
    -------
    ZScoreBatch
        ``z`` (float64, signed), ``streak`` (int64), ``alert`` (bool) and
        ``emitted`` (float64, ``|z|`` while alert else 0.0).

    Examples
    --------
    A spike scores against the window before it (the tutorial's
    self-including window could never exceed 1.79 for ``n = 5``):

    >>> x = [20.0, 20.2, 19.9, 20.1, 20.0, 20.1, 25.0, 20.1, 19.9]
    >>> r = rolling_zscore(x, window=5, min_periods=5, lag=0)
    >>> np.round(r.z, 1).tolist()
    [nan, nan, nan, nan, nan, 0.5, 43.3, -0.4, -0.5]
    >>> r.streak.tolist()
    [0, 0, 0, 0, 0, 0, 1, 0, 0]
    >>> bool(r.alert.any())  # one sample is not a streak of 3
    False
    >>> rolling_zscore(x, window=5, min_periods=5, streak=1, lag=0).alert.astype(int).tolist()
    [0, 0, 0, 0, 0, 0, 1, 0, 0]

    A flat baseline gives z = 0, and a step after it a large finite z (the floor):

    >>> rolling_zscore([5.0] * 6 + [6.0], window=5, min_periods=2, lag=0).z.tolist()
    [nan, nan, 0.0, 0.0, 0.0, 0.0, 200000000.0]

    A level shift: without a lag its first sample inflates the next baselines;
    with the default lag (``streak - 1 = 2``) three samples in a row stay far
    above 3 and raise the alert:

    >>> x = [20.0, 20.2, 19.9, 20.1, 20.0, 20.1, 19.8, 20.0] + [25.0] * 4
    >>> rolling_zscore(x, window=5, lag=0).z[-4:].round(1).tolist()
    [40.8, 1.8, 1.1, 0.7]
    >>> r = rolling_zscore(x, window=5)
    >>> r.z[-4:].round(1).tolist(), r.alert[-4:].astype(int).tolist()
    ([43.3, 38.5, 40.8, 1.8], [0, 0, 1, 0])
    """
    w, minp, thr, k, res, fl, lag = _check_params(window, min_periods, threshold, streak,
                                                  resolve, std_floor, lag)
    z, nr, hit, _, _ = _run(x, [], w, lag, minp, fl, res, thr)
    s, a, e = _guard(z, nr, thr, k, res, hit=hit)
    return ZScoreBatch(z, s, a, e)


# --------------------------------------------------------------------------
# streaming state
# --------------------------------------------------------------------------
_tuple_new = tuple.__new__
_sqrt = math.sqrt


_NAN_RESULT = ZScoreResult(_NAN, 0, False, 0.0)


def _guard_step(det, z: float) -> ZScoreResult:
    """One sample of the streak guard with hysteresis, on a streaming detector's state.

    ``det`` has ``streak`` (the parameter), ``_thr``/``_res`` (the limits with
    their tie margin) and the state ``_streak``/``_alert``.  Shared by
    :class:`RollingZScore` and :class:`pipeline.baselines.EWMAZScore`; the
    vectorized twin is :func:`_guard`.
    """
    az = z if z >= 0.0 else -z
    if az > det._thr:
        st = det._streak + 1
        al = True if st >= det.streak else det._alert
    else:
        st = 0
        al = det._alert and az > det._res
    det._streak = st
    det._alert = al
    return _tuple_new(ZScoreResult, (z, st, al, az if al else 0.0))


def _guard_reset(det) -> ZScoreResult:
    """A sample that cannot be scored (NaN in, or warm-up): no z, the streak and alert end."""
    det._streak = 0
    det._alert = False
    return _NAN_RESULT
_EPS_STD = config.EPS_STD


class RollingZScore:
    """Streaming rolling z-score with a streak guard (river style: ``update`` returns).

    Each call to :meth:`update` scores one sample against the up to ``window``
    finite samples before it (skipping the ``lag`` newest), then stores it.
    O(1) work per sample: a ring buffer plus rolling sums of deviations from
    a reference sample, rebuilt exactly from the ring when their rounding-error
    bound demands it (amortized O(1)).  Pickle is the checkpoint: a pickled
    object continues exactly where it stopped.

    Parameters
    ----------
    window : int, default=config.Z_WINDOW
        Baseline length in samples (15 = 30 s at a 2 s cadence); in
        [2, config.Z_MAX_WINDOW].
    min_periods : int, default=config.Z_MIN_PERIODS
        Baseline samples needed before a z is produced; in [2, window].
        Until then ``z`` is NaN (warm-up).
    threshold : float, default=config.Z_THRESHOLD
        ``|z|`` above this counts toward a streak; > 0.
    streak : int, default=config.Z_STREAK
        Consecutive samples above ``threshold`` that turn the alert on; >= 1.
    resolve : float, default=config.Z_RESOLVE
        An active alert stays on while ``|z| > resolve`` and turns off at the
        first sample with ``|z| <= resolve`` (or a non-finite sample);
        in [0, threshold).
    std_floor : float, default=0.0
        Absolute std floor, added to the relative floor
        ``EPS_STD * max(1, |mean|)``; in [0, config.Z_MAX_ABS].
    lag : int or None, default=None
        Finite samples between the baseline and the scored sample; in
        [0, config.Z_MAX_WINDOW]; None means ``streak - 1`` (see
        :func:`rolling_zscore`).

    Attributes
    ----------
    n_baseline : int
        Samples currently in the baseline (<= window).
    n_extreme : int
        Finite samples refused so far for ``|x| > config.Z_MAX_ABS`` (scored
        NaN, like a NaN).
    current_streak : int
        Streak after the last update.
    alert_on : bool
        Whether the alert is on after the last update.

    See Also
    --------
    rolling_zscore : the vectorized batch twin.

    Examples
    --------
    >>> det = RollingZScore(window=5, min_periods=5, streak=1)
    >>> for v in [20.0, 20.2, 19.9, 20.1, 20.0]:
    ...     r = det.update(v)
    >>> r  # warm-up: 4 samples in the baseline
    ZScoreResult(z=nan, streak=0, alert=False, emitted=0.0)
    >>> round(det.update(20.1).z, 2)
    0.53
    >>> r = det.update(25.0)
    >>> round(r.z, 1), r.streak, r.alert, round(r.emitted, 1)
    (43.3, 1, True, 43.3)
    >>> r = det.update(float("nan"))  # NaN in, NaN out; ends the alert
    >>> r.z, r.alert
    (nan, False)
    >>> det.update_many([20.1, 19.9]).z.round(2).tolist()
    [-0.41, -0.53]
    """

    __slots__ = ("window", "min_periods", "threshold", "streak", "resolve", "std_floor", "lag",
                 "_thr", "_res", "_buf", "_pos", "_n", "_ref", "_s1", "_s2", "_acc", "_cycles",
                 "_streak", "_alert", "_n_extreme")

    def __init__(self, window=config.Z_WINDOW, min_periods=config.Z_MIN_PERIODS,
                 threshold=config.Z_THRESHOLD, streak=config.Z_STREAK,
                 resolve=config.Z_RESOLVE, std_floor=0.0, lag=None):
        (self.window, self.min_periods, self.threshold, self.streak, self.resolve,
         self.std_floor, self.lag) = _check_params(window, min_periods, threshold, streak,
                                                   resolve, std_floor, lag)
        self._thr = _above_limit(self.threshold)
        self._res = _above_limit(self.resolve)
        self._buf = []  # ring of the last window + lag finite values, oldest at _pos once full
        self._pos = 0
        self._n = 0  # values in the baseline: the oldest min(window, len - lag) of the ring
        self._ref = 0.0
        self._s1 = 0.0  # sum of (v - ref) over the baseline
        self._s2 = 0.0  # sum of (v - ref)**2
        self._acc = 0.0  # running rounding-error scale since the last rebuild
        self._cycles = 0
        self._streak = 0
        self._alert = False
        self._n_extreme = 0

    # -- state ---------------------------------------------------------------
    @property
    def n_baseline(self) -> int:
        return self._n

    @property
    def n_extreme(self) -> int:
        return getattr(self, "_n_extreme", 0)  # 0 in a state pickled before it existed

    @property
    def current_streak(self) -> int:
        return self._streak

    @property
    def alert_on(self) -> bool:
        return self._alert

    def _ring(self):
        """Stored values, oldest first."""
        p = self._pos
        return self._buf[p:] + self._buf[:p]

    def _rebuild(self):
        """Exact sums over the baseline, around its sample nearest the mean (the first
        such sample; numpy for long baselines, the same IEEE operations)."""
        base = self._ring()[:self._n]
        m0 = math.fsum(base) / len(base)
        if len(base) > 256:
            arr = np.array(base)
            ref = base[int(np.argmin(np.abs(arr - m0)))]
            ds = (arr - ref).tolist()
            sq = (np.array(ds) ** 2).tolist()
        else:
            ref = min(base, key=lambda v: abs(v - m0))
            ds = [v - ref for v in base]
            sq = [d * d for d in ds]
        self._ref = ref
        self._s1 = math.fsum(ds)
        self._s2 = s2 = math.fsum(sq)
        self._acc = s2
        self._cycles = 0

    def _set_state(self, values, streak, alert):
        self._buf = list(values)
        self._pos = 0
        self._n = min(self.window, max(0, len(self._buf) - self.lag))
        self._streak = int(streak)
        self._alert = bool(alert)
        if self._n:
            self._rebuild()
        else:
            self._ref = self._s1 = self._s2 = self._acc = 0.0

    # -- streaming -----------------------------------------------------------
    def update(self, x) -> ZScoreResult:
        """Score one sample against the baseline before it, then store it.

        Parameters
        ----------
        x : float
            The new sample; NaN, inf or ``|x| > config.Z_MAX_ABS`` marks a
            missing sample.

        Returns
        -------
        ZScoreResult
            ``(z, streak, alert, emitted)``.
        """
        x = float(x)
        if not -_MAX_ABS <= x <= _MAX_ABS:  # NaN, inf, extreme: not stored, resets, ends alert
            if x - x == 0.0:
                self._n_extreme = self.n_extreme + 1
            return _guard_reset(self)
        n = self._n
        s1 = self._s1
        s2 = self._s2
        ref = self._ref
        if n >= self.min_periods:
            md = s1 / n
            mean = ref + md
            fl = self.std_floor + _EPS_STD * (mean if mean > 1.0 else
                                               (-mean if mean < -1.0 else 1.0))
            m2 = s2 - s1 * md
            if self._acc > _KACC * (m2 + (n - 1) * fl * fl):  # error bound too large
                self._rebuild()
                s1 = self._s1
                s2 = self._s2
                ref = self._ref
                md = s1 / n
                m2 = s2 - s1 * md
                mean = ref + md  # the floor too: the old mean may have been off (cancellation)
                fl = self.std_floor + _EPS_STD * (mean if mean > 1.0 else
                                                   (-mean if mean < -1.0 else 1.0))
            s = _sqrt(m2 / (n - 1)) if m2 > 0.0 else 0.0
            z = ((x - ref) - md) / (s if s > fl else fl)
            res = _guard_step(self, z)
        else:
            res = _guard_reset(self)
        # store x; the value `lag` places back enters the baseline
        buf = self._buf
        w = self.window
        if n == w:  # the ring is full: the oldest value leaves the baseline
            p = self._pos
            do = buf[p] - ref
            buf[p] = x
            p += 1
            c = len(buf)
            if p == c:
                p = 0
                cyc = self._cycles + 1
                self._cycles = cyc
                if cyc >= _CYCLES:
                    self._pos = p
                    self._rebuild()
                    return res
            self._pos = p
            if self.lag:
                q = p + w - 1
                d = buf[q if q < c else q - c] - ref
            else:
                d = x - ref
            s2n = s2 + (d * d - do * do)
            self._s1 = s1 + (d - do)
            self._s2 = s2n
            self._acc += s2 + s2n
        else:  # warm-up: the ring fills
            buf.append(x)
            k = len(buf) - 1 - self.lag  # index of the value entering the baseline
            if k >= 0:
                e = buf[k]
                if n == 0:
                    self._ref = ref = e
                self._n = n + 1
                d = e - ref
                self._s1 = s1 + d
                self._s2 = s2n = s2 + d * d
                self._acc += s2n
        return res

    def update_many(self, xs: Iterable[float]) -> ZScoreBatch:
        """Score a batch of samples (vectorized), continuing the stream.

        Same results as calling :meth:`update` on each sample in turn (z to
        ~1e-10, streak and alert exactly) and leaves the same state (the
        rolling sums are rebuilt exactly from the new ring).

        Parameters
        ----------
        xs : array_like of float, shape (n,)

        Returns
        -------
        ZScoreBatch
        """
        x = np.asarray(xs, dtype=np.float64)
        z, nr, hit, new_buf, n_ext = _run(x, self._ring(), self.window, self.lag,
                                          self.min_periods, self.std_floor, self.resolve,
                                          self.threshold)
        if n_ext:
            self._n_extreme = self.n_extreme + n_ext
        s, a, e = _guard(z, nr, self.threshold, self.streak, self.resolve, self._streak,
                         self._alert, hit)
        if x.size:
            self._set_state(new_buf, s[-1], a[-1])
        return ZScoreBatch(z, s, a, e)

    def __repr__(self):
        return (f"RollingZScore(window={self.window}, min_periods={self.min_periods}, "
                f"threshold={self.threshold:g}, streak={self.streak}, "
                f"resolve={self.resolve:g}, std_floor={self.std_floor:g}, lag={self.lag})")
