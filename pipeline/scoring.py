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
from .segment import n_segments, sliding_segments, tail_start
from .series import format_timestamp, run_breaks, step_kind


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


def score_segments_batch(model, times_ns, values, period_ns: float,
                         jitter_tol: float = JITTER_TOL) -> SegmentScores:
    """Score a whole series at once: the batch twin of :class:`SegmentScorer`.

    One call of :meth:`SegmentScorer.update` on a fresh scorer, so the batch
    and the stream share one code path.  ``times_ns`` must be strictly
    increasing (:func:`~pipeline.series.validate_series` makes it so);
    :class:`ValueError` otherwise.  The samples at the end of the last run
    that fill no segment are left out.
    """
    scorer = SegmentScorer(model.segment_len, int(model.slide_len_), period_ns, jitter_tol)
    return scorer.update(model, times_ns, values)


@dataclass
class SegmentScorer:
    """Carry-over state for scoring a series that arrives in chunks.

    Picklable: the stream checkpoints it.  Holds fewer than ``segment_len``
    samples between calls (the start of the next, incomplete segment).
    ``n_skipped_samples`` counts samples that no segment covered because a
    gap closed their run first; ``n_gaps`` counts breaks (gaps and
    irregular steps), ``last_gaps`` lists those of the last call.  Both are
    the same however the samples are chunked, including a break that falls
    exactly between two calls (``last_time_ns`` remembers the last sample
    even when no carry is left, e.g. with ``slide_len == segment_len``).

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
    n_skipped_samples: int = 0
    n_gaps: int = 0
    last_gaps: list = field(default_factory=list)
    carry_covered: int = 0
    """Leading carry samples already covered by a segment of the previous call."""
    last_time_ns: int | None = None
    """Timestamp of the last sample seen (``None`` before the first)."""

    def update(self, model, times_ns, values) -> SegmentScores:
        """Absorb new samples (strictly after the previous ones); return newly complete segments.

        Breaks found in this call are left in ``last_gaps`` for the caller to log.

        Raises
        ------
        ValueError
            The model's segment or slide length differs from the scorer's,
            or the timestamps are not strictly increasing (within the chunk
            or after the previous one), or a value is NaN/inf.  The state is
            then unchanged.
        """
        L, s = self.segment_len, self.slide_len
        if model.segment_len != L or int(model.slide_len_) != s:
            raise ValueError(
                f"model segment/slide ({model.segment_len}/{model.slide_len_}) differ from the "
                f"scorer's ({L}/{s}); a changed model needs a fresh state"
            )
        raw_t = np.asarray(times_ns)
        if raw_t.size and raw_t.dtype.kind not in "iu":
            if raw_t.dtype.kind != "f" or not np.all(np.mod(raw_t, 1) == 0):
                raise ValueError(
                    f"times must be integer nanoseconds since the epoch, got {raw_t.dtype} values "
                    f"such as {float(raw_t.flat[min(1, raw_t.size - 1)])!r}; convert them first, e.g. "
                    "np.round(seconds * 1e9).astype(np.int64)")
        times_ns = raw_t.astype(np.int64)
        values = np.asarray(values, np.float64)
        if len(times_ns) > 1:
            step = float(np.median(np.diff(times_ns[:1000])))
            if 0 < step * 1000 < self.period_ns:
                raise ValueError(
                    f"the timestamps step by about {step:g} but the sample period is "
                    f"{self.period_ns:g} ns: the times are not in nanoseconds; convert them "
                    "(seconds * 1e9, milliseconds * 1e6)")
        if times_ns.ndim != 1 or values.shape != times_ns.shape:
            raise ValueError(f"times_ns and values must be 1-D and equally long, got shapes "
                             f"{times_ns.shape} and {values.shape}")
        if len(times_ns) == 0:
            self.last_gaps = []
            return SegmentScores.empty()
        finite = np.isfinite(values)
        if not finite.all():
            raise ValueError(f"values must be finite; {int(np.count_nonzero(~finite))} are NaN/inf "
                             "(drop them first: pipeline.series.validate_series makes them gaps)")
        prev = self.last_time_ns
        if prev is None and len(self.carry_t):  # a state pickled before last_time_ns existed
            prev = int(self.carry_t[-1])
        # the new steps, from the last sample seen: the carry's own were checked before
        head = times_ns if prev is None else np.concatenate([np.array([prev], np.int64), times_ns])
        steps = np.diff(head)
        bad = np.flatnonzero(steps <= 0)
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"timestamps must be strictly increasing, got {format_timestamp(head[i + 1])} "
                f"after {format_timestamp(head[i])} ({len(bad)} such step(s)); sort and "
                "deduplicate first (pipeline.series.validate_series)")
        hb = run_breaks(head, self.period_ns, self.jitter_tol)
        self.last_gaps = [Gap(int(head[i - 1]), int(head[i]), step_kind(steps[i - 1], self.period_ns))
                          for i in hb.tolist()]
        self.n_gaps += len(hb)
        self.last_time_ns = int(times_ns[-1])
        t = np.concatenate([self.carry_t, times_ns])
        v = np.concatenate([self.carry_v, values])
        # head index i is t index i + off; a break at t index 0 (an empty carry)
        # closes a run that ended in the previous call, fully covered
        off = 0 if prev is None else len(self.carry_t) - 1
        bounds = [0, *(b for b in (hb + off).tolist() if b > 0), len(t)]
        parts = []
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            n = b - a
            n_seg = n_segments(n, L, s)
            if n_seg:
                segs = sliding_segments(v[a:b], L, s)
                starts = a + np.arange(n_seg) * s
                parts.append(SegmentScores(t[starts + L // 2],
                                           np.asarray(model.score_segments(segs), np.float64)))
            used = tail_start(n, L, s)  # samples before the next segment's start
            covered = self.carry_covered if a == 0 else 0  # the carry opens the first run
            if k < len(bounds) - 2:  # a closed run: its tail can never complete
                self.n_skipped_samples += n - covered if n_seg == 0 else n - (used - s + L)
            else:
                self.carry_t = t[a + used:b].copy()
                self.carry_v = v[a + used:b].copy()
                self.carry_covered = min(L - s, n - used) if n_seg else covered
        return SegmentScores.concat(parts)
