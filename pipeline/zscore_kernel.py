"""The vectorized rolling z-score kernel: blocked prefix sums with an exact fallback.

:func:`_kernel` scores every sample against the up to ``w`` samples before
it (skipping the ``lag`` newest), in cache-sized chunks of blocks of
``max(128, w)`` outputs.  Each block works on deviations from a reference
near its mean, with one complex ``cumsum`` for the prefix sums of ``d`` and
``d**2``; the windows whose rounding-error bound exceeds ``_TOL`` of their
variance are recomputed by the exact two-pass :func:`_direct`.  The public
entry is :func:`pipeline.zscore.rolling_zscore`; the z-score block of many
keys (:mod:`pipeline.detectors.block_zscores`) cuts its keys into the same
blocks and shares :func:`_block_sums`, :func:`_refine` and :func:`_direct`.
"""

from __future__ import annotations

import math

import numpy as np

from . import config
from .streak import _above_limit

_EPS = float(np.finfo(np.float64).eps)
_TOL = 1e-10
"""Relative rounding-error budget on the window variance (and on the numerator
relative to the std) before a rolling result is recomputed exactly."""
_BLOCK = 128
"""Outputs per prefix-sum block of the vectorized kernel (at least ``window``)."""
_CHUNK = 1 << 14
"""Outputs per cache-sized chunk of the vectorized kernel."""
_BLOCKED_MAX_WINDOW = 1 << 15
"""Largest window for the blocked prefix-sum kernel.  Its rounding-error bound
grows like ``eps * window**2``, so from about 56,000 samples on every output
fails the ``_TOL`` test and is recomputed in O(window) (measured: 4.7 s for
120k samples at window 60,000, quadratic beyond).  Larger windows are scored
by the streaming recurrence instead (O(1) per sample, about 2-3 us)."""


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
    :func:`_blocked` and the fleet blocks (:mod:`pipeline.detectors.block_zscores`), which must do
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
    :func:`_blocked` and the fleet blocks of :mod:`pipeline.detectors.block_zscores`.
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
