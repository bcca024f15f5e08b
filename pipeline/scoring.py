"""Incremental scoring of one regular series: the stream's numeric state.

:class:`SegmentScorer` turns samples that arrive in arbitrary chunks into
complete segments and scores them with a fitted
:class:`~pipeline.kmeans.KMeansReconstructor`.  It produces exactly what
:func:`score_segments_batch` produces on the whole series at once, however
the samples are chunked (tests pin this), so a live stream, a backfill and
a notebook agree to the last bit.

Segmentation rules (shared by both):

* A *run* is a stretch of consecutive samples whose spacing is within
  ``(1 ± jitter_tol)`` sample periods.  A larger step is a gap; a smaller
  one (an extra or duplicated sample) is an irregularity.  Both end the run.
* Segments are anchored at the first sample of a run and advance by
  ``slide_len`` samples; a segment never spans a gap.  The samples at the
  end of a run that do not fill a segment are *skipped* (counted) once
  the run is known to be closed.
* A segment's timestamp is that of its centre sample
  (``start + segment_len // 2``), so re-scoring a range overwrites the same
  points instead of duplicating them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import JITTER_TOL
from .segment import sliding_segments
from .series import run_breaks, step_kind


@dataclass
class SegmentScores:
    """Scores of complete segments: centre timestamps (ns) and max |error|."""

    times: np.ndarray
    errors: np.ndarray

    @classmethod
    def empty(cls) -> SegmentScores:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64))

    @classmethod
    def concat(cls, parts) -> SegmentScores:
        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.times for p in parts]), np.concatenate([p.errors for p in parts]))

    def __len__(self) -> int:
        return len(self.times)


@dataclass
class Gap:
    """A break in the series: the last sample before it and the first after it."""

    before_ns: int
    after_ns: int
    kind: str  # "gap" (step too large) or "irregular" (step too small)


def _score_run(model, times, values) -> SegmentScores:
    L, s = model.segment_len, _slide(model)
    n = len(values)
    if n < L:
        return SegmentScores.empty()
    segs = sliding_segments(values, L, s)
    starts = np.arange(segs.shape[0]) * s
    return SegmentScores(times[starts + L // 2], np.asarray(model.score_segments(segs), np.float64))


def _slide(model) -> int:
    return int(model.slide_len or model.segment_len // 2)


def score_segments_batch(model, times_ns, values, period_ns: float,
                         jitter_tol: float = JITTER_TOL) -> SegmentScores:
    """Score a whole series at once: the batch twin of :class:`SegmentScorer`."""
    times_ns = np.asarray(times_ns, np.int64)
    values = np.asarray(values, np.float64)
    bounds = [0, *run_breaks(times_ns, period_ns, jitter_tol).tolist(), len(times_ns)]
    return SegmentScores.concat(
        _score_run(model, times_ns[a:b], values[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    )


@dataclass
class SegmentScorer:
    """Carry-over state for scoring a series that arrives in chunks.

    Picklable: the stream checkpoints it.  Holds fewer than ``segment_len``
    samples between calls (the start of the next, incomplete segment).
    ``n_skipped_samples`` counts samples that no segment covered because a
    gap closed their run first.

    Parameters
    ----------
    segment_len, slide_len : int
        Must match the model that will score (checked on use).
    period_ns : float
        Sample period of the series.
    """

    segment_len: int
    slide_len: int
    period_ns: float
    jitter_tol: float = JITTER_TOL
    carry_t: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    carry_v: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    n_segments: int = 0
    n_skipped_samples: int = 0
    n_gaps: int = 0
    last_gaps: list = field(default_factory=list)
    carry_covered: int = 0
    """Leading carry samples already covered by a segment of the previous call."""

    def update(self, model, times_ns, values) -> SegmentScores:
        """Absorb new samples (strictly after the previous ones); return newly complete segments.

        Breaks found in this call are left in ``last_gaps`` for the caller to log.
        """
        if model.segment_len != self.segment_len or _slide(model) != self.slide_len:
            raise ValueError(
                f"model segment/slide ({model.segment_len}/{_slide(model)}) differ from the "
                f"scorer's ({self.segment_len}/{self.slide_len}); a changed model needs a fresh state"
            )
        times_ns = np.asarray(times_ns, np.int64)
        values = np.asarray(values, np.float64)
        if len(times_ns) == 0:
            return SegmentScores.empty()
        if len(self.carry_t) and times_ns[0] <= self.carry_t[-1]:
            raise ValueError("samples must arrive in strictly increasing time order")
        t = np.concatenate([self.carry_t, times_ns])
        v = np.concatenate([self.carry_v, values])
        breaks = run_breaks(t, self.period_ns, self.jitter_tol).tolist()
        # the carry is one open run, so every break found here is new
        self.last_gaps = [Gap(int(t[i - 1]), int(t[i]), step_kind(t[i] - t[i - 1], self.period_ns))
                          for i in breaks]
        self.n_gaps += len(breaks)
        bounds = [0, *breaks, len(t)]
        parts = []
        L, s = self.segment_len, self.slide_len
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            n = b - a
            n_seg = 0 if n < L else (n - L) // s + 1
            if n_seg:
                segs = sliding_segments(v[a:b], L, s)
                starts = a + np.arange(n_seg) * s
                parts.append(SegmentScores(t[starts + L // 2],
                                           np.asarray(model.score_segments(segs), np.float64)))
            used = n_seg * s  # samples before the next segment's start
            covered = self.carry_covered if a == 0 else 0  # the carry opens the first run
            if k < len(bounds) - 2:  # a closed run: its tail can never complete
                self.n_skipped_samples += n - covered if n_seg == 0 else n - (used - s + L)
            else:
                self.carry_t = t[a + used:b].copy()
                self.carry_v = v[a + used:b].copy()
                self.carry_covered = min(L - s, b - a - used) if n_seg else covered
        out = SegmentScores.concat(parts)
        self.n_segments += len(out)
        return out
