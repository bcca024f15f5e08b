"""The block interface and what every block shares: many keys' detector states as arrays.

:class:`Block` holds the streaming state of one detector for ``n`` keys (rows) and updates every
key of a read at once (``update(rows, starts, times, values)``); :class:`BlockOutput` is what an
update returns.  Also here: the alarm hold segmented over keys (:meth:`Block._hold`), the choice
of keys that go through their per-key state (:func:`_longest`) and the column-by-column walk over
ragged per-key segments (:func:`_columns`).  The blocks themselves live in
:mod:`pipeline.detectors.block_flatline`, :mod:`pipeline.detectors.block_zscores` and
:mod:`pipeline.detectors.block` (:func:`~pipeline.detectors.block.make_block`).

Examples
--------
>>> [(c, keys.tolist(), p.tolist()) for c, keys, p in _columns(np.array([0, 2, 5]))]
[(0, [1, 0], [2, 0]), (1, [1, 0], [3, 1]), (2, [1], [4])]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..checks import _usable
from .base import DetectorOutput

__all__ = ["Block", "BlockOutput"]

_NONE = np.iinfo(np.int64).min
"""Stands for ``None`` in int64 state arrays (a last hit, a run start)."""


@dataclass
class BlockOutput:
    """One detector's output for every key of an update.

    ``starts`` holds, for each key of the update (in its order), the offset
    of its first output point: key ``j`` owns points ``starts[j]:starts[j+1]``.
    Per-sample detectors have one output point per input point.
    """

    detector: object
    rows: np.ndarray
    starts: np.ndarray
    times: np.ndarray
    score: np.ndarray
    alarm: np.ndarray
    threshold: float
    extra: dict = field(default_factory=dict)
    gaps: list = field(default_factory=list)
    """``(row, [Gap, ...])`` for the keys where the detector found breaks."""
    skipped: int = 0
    """Samples the detector skipped at breaks in this update (all keys)."""
    late: int = 0
    """Samples a cross-key detector did not score: their time bin had been scored already
    (their key came more than its wait after the others)."""

    def __len__(self) -> int:
        return len(self.times)

    def fields(self, diagnostics: bool = False) -> dict:
        """The fields to write, under the detector's field names (all keys), exactly as
        :meth:`DetectorOutput.fields` gives them for one key."""
        return DetectorOutput(self.detector, self.times, self.score, self.alarm, self.threshold,
                              self.extra).fields(diagnostics)

    def key_output(self, j: int) -> DetectorOutput:
        """The :class:`DetectorOutput` of the ``j``-th key of the update."""
        a, b = int(self.starts[j]), int(self.starts[j + 1])
        return DetectorOutput(self.detector, self.times[a:b], self.score[a:b], self.alarm[a:b],
                              self.threshold, {k: v[a:b] for k, v in self.extra.items()})


class Block:
    """Streaming state of one detector for ``n`` keys (rows)."""

    per_sample = True

    def __init__(self, det, n: int = 0):
        self.det = det
        self.n = 0
        self._init_arrays()
        self.grow(n)

    # -- rows -------------------------------------------------------------
    def _init_arrays(self) -> None:
        self.last_hit = np.empty(0, np.int64)

    def _fresh(self, n: int) -> dict:
        """Arrays of ``n`` fresh rows, by attribute name."""
        return {"last_hit": np.full(n, _NONE, np.int64)}

    def grow(self, n: int) -> None:
        """Make the block ``n`` rows long; new rows are fresh states."""
        if n <= self.n:
            return
        for name, arr in self._fresh(n - self.n).items():
            setattr(self, name, np.concatenate([getattr(self, name), arr]))
        self.n = n

    def reset_rows(self, rows) -> None:
        """Fresh states for ``rows`` (a key whose state cannot be trusted any more)."""
        rows = np.asarray(rows, np.int64)
        for name, arr in self._fresh(len(rows)).items():
            getattr(self, name)[rows] = arr

    def row_state(self, i: int):
        """A per-key :class:`DetectorState` equal to row ``i``."""
        raise NotImplementedError

    def set_row(self, i: int, st) -> None:
        """Make row ``i`` equal to the per-key state ``st``."""
        raise NotImplementedError

    def set_keys(self, keys) -> None:
        """The key name of each row (a block that compares keys learns them per name; the
        others need not know)."""

    def finish(self) -> BlockOutput:
        """What the block held back, at the end of the data: nothing, unless it waits for the
        other keys (the fleet detector's open time bins)."""
        e = np.empty(0, np.int64)
        return BlockOutput(self.det, e, np.zeros(1, np.int64), e, np.empty(0),
                           np.empty(0, bool), self.det.threshold_)

    # -- data -------------------------------------------------------------
    def get_data(self) -> tuple[dict, dict]:
        return {}, {name: getattr(self, name) for name in self._fresh(0)}

    def set_data(self, meta: dict, arrays: dict, n: int) -> None:
        fresh = self._fresh(n)
        for name, like in fresh.items():
            a = arrays.get(name)
            if a is None or a.shape != like.shape or a.dtype != like.dtype:
                raise ValueError(f"{self.det.name} block: array {name!r} missing or not "
                                 f"{like.dtype} {like.shape}")
            setattr(self, name, np.array(a))
        self.n = n

    # -- update -----------------------------------------------------------
    def update(self, rows, starts, times, values) -> BlockOutput:
        rows = np.asarray(rows, np.int64)
        starts = np.asarray(starts, np.int64)
        t = np.asarray(times, np.int64)
        v = np.asarray(values, np.float64)
        lengths = np.diff(starts)
        slow = self._slow_groups(lengths, v, starts)
        n = len(t)
        score = np.empty(n)
        alarm = np.empty(n, bool)
        extra = {k: np.empty(n, dt) for k, dt in self._extra_dtypes().items()}
        if slow.any():
            for j in np.flatnonzero(slow).tolist():
                a, b = int(starts[j]), int(starts[j + 1])
                st = self.row_state(int(rows[j]))
                o = st.update_many(t[a:b], v[a:b])
                self.set_row(int(rows[j]), st)
                score[a:b], alarm[a:b] = o.score, o.alarm
                for k in extra:
                    extra[k][a:b] = o.extra[k]
        fast = ~slow
        if fast.any():
            if slow.any():
                pm = np.repeat(fast, lengths)
                fl = lengths[fast]
                fs = np.concatenate(([0], np.cumsum(fl)))
                sc, al, ex = self._update_fast(rows[fast], fs, t[pm], v[pm])
                score[pm], alarm[pm] = sc, al
                for k in extra:
                    extra[k][pm] = ex[k]
            else:
                score, alarm, extra = self._update_fast(rows, starts, t, v)
        return BlockOutput(self.det, rows, starts, t, score, alarm, self.det.threshold_, extra)

    def _extra_dtypes(self) -> dict:
        return {}

    def _slow_groups(self, lengths, v, starts) -> np.ndarray:
        """Keys that go through their per-key state: those with a non-finite value or one
        beyond ``Z_MAX_ABS``, and the longest ones when a per-key update is cheaper than more
        columns for everyone."""
        slow = np.zeros(len(lengths), bool)
        ok = _usable(v)
        if len(v) and not ok.all():
            bad = np.add.reduceat(~ok, starts[:-1]) > 0
            slow |= bad & (lengths > 0)
        return slow | _longest(lengths, self._column_cost)

    _column_cost = 1.0
    """Cost of one column (all keys) relative to one per-key update."""

    def _update_fast(self, rows, starts, t, v):
        raise NotImplementedError

    # -- the alarm hold, segmented over keys --------------------------------
    def _hold(self, rows, starts, t, raw) -> np.ndarray:
        """:func:`~pipeline.detectors.base.hold_alarm` of every key, carrying ``last_hit``."""
        n = len(t)
        first = starts[:-1]
        is_start = np.zeros(n, bool)
        is_start[first] = True
        idx = np.where(raw | is_start, np.arange(n), -1)
        fill = np.maximum.accumulate(idx)
        gid = np.repeat(np.arange(len(rows)), np.diff(starts))
        carry = self.last_hit[rows][gid]
        last_t = np.where(raw[fill], t[fill], carry)
        has = last_t != _NONE
        alarm = has & (t - np.where(has, last_t, t) <= self.det.hold_ns())
        last = starts[1:] - 1
        self.last_hit[rows] = last_t[last]
        return alarm


def _longest(lengths, column_cost: float) -> np.ndarray:
    """The keys to update one by one so that ``k + column_cost * (longest other)`` is least."""
    g = len(lengths)
    out = np.zeros(g, bool)
    if g == 0:
        return out
    order = np.argsort(-lengths, kind="stable")
    ms = np.append(lengths[order], 0)
    k = int(np.argmin(np.arange(g + 1) + column_cost * ms))
    out[order[:k]] = True
    return out


def _n_longer(ls_desc, c) -> int:
    """Number of entries of a descending array that are > c."""
    return int(np.searchsorted(-ls_desc, -c, side="left"))


def _columns(starts):
    """Walk ragged per-key segments ``[starts[i], starts[i+1])`` column by column.

    Yields ``(c, keys, p)``: the keys (indices into the segments, longest first) that have a
    ``c``-th sample, and where those samples are.  A recurrence then runs vectorized over keys
    and sequentially over time.
    """
    lengths = np.diff(starts)
    order = np.argsort(-lengths, kind="stable")
    ls = lengths[order]
    st0 = starts[:-1][order]
    for c in range(int(ls[0]) if len(ls) else 0):
        m = _n_longer(ls, c)
        yield c, order[:m], st0[:m] + c
