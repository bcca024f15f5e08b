"""Every key of one series in arrays: where each stands, its checks and its detectors' blocks.

A :class:`Fleet` is the stream's state for one configured series: one row
per fan-out tag value (one row, key ``""``, without fan-out).  Per row it
keeps the last processed time (the *mark*), the last sample's time, the
sample count, the sample-period check and, per detector, a row of that
detector's :mod:`block <pipeline.detectors.block>`.  A read of many keys is
handled as one :class:`Batch` (points sorted by row), so the per-key Python
work of a poll is a few dictionary look-ups, whatever the number of keys.

Sample-period rule: the first :data:`N_STEPS` steps between a key's
consecutive samples (across reads, so a key polled one sample at a time is
checked too) must have a median within 1 % of the model's period.

Late points: points are counted per key and :data:`late window <LateCounter>`
bucket of data time as they are scored; :meth:`Fleet.late_check` compares
those counts with InfluxDB's counts of the closed buckets (one ``COUNT ...
GROUP BY time(), tag`` query per series); the excess arrived after the key
had moved past it.  Such points are counted and logged, not scored.

The fleet's data (:meth:`Fleet.get_data`) is what the stream checkpoints: one
file per series, written atomically (:mod:`pipeline.checkpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .detectors.block import make_block

__all__ = ["Fleet", "Batch", "N_STEPS", "NONE"]

NONE = np.iinfo(np.int64).min
"""Stands for "no time yet" in int64 arrays."""
N_STEPS = 16
"""Steps of a key whose median is checked against the model's sample period."""
PERIOD_TOL = 0.01


@dataclass
class Batch:
    """The points of one read to score: sorted by row, ascending in time within a row."""

    rows: np.ndarray
    """The fleet row of each group (unique)."""
    starts: np.ndarray
    """Offsets of each group's points (``len(rows) + 1``)."""
    times: np.ndarray
    values: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)

    def __len__(self) -> int:
        return len(self.times)

    def point_rows(self) -> np.ndarray:
        return np.repeat(self.rows, self.lengths)

    def without(self, drop_groups: np.ndarray) -> Batch:
        """This batch without the groups where ``drop_groups`` is True."""
        keep = ~drop_groups
        pm = np.repeat(keep, self.lengths)
        lengths = self.lengths[keep]
        return Batch(self.rows[keep], np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
                     self.times[pm], self.values[pm])

    @classmethod
    def from_points(cls, point_rows, times, values) -> Batch:
        """Group points by row (stable: each row keeps its read order)."""
        point_rows = np.asarray(point_rows, np.int64)
        if len(point_rows) and np.any(point_rows[1:] < point_rows[:-1]):
            order = np.argsort(point_rows, kind="stable")
            point_rows, times, values = point_rows[order], times[order], values[order]
        if len(point_rows) == 0:
            return cls(np.empty(0, np.int64), np.zeros(1, np.int64), np.asarray(times, np.int64),
                       np.asarray(values, np.float64))
        brk = np.flatnonzero(point_rows[1:] != point_rows[:-1]) + 1
        starts = np.concatenate(([0], brk, [len(point_rows)])).astype(np.int64)
        return cls(point_rows[starts[:-1]], starts, np.asarray(times, np.int64),
                   np.asarray(values, np.float64))


class Fleet:
    """The state of one configured series: every key's mark, checks and detector states.

    Parameters
    ----------
    name : str
        The series' name in the config.
    model : ModelFile
        Its model; one block per enabled detector.
    origin_ns : int
        Where a key seen for the first time starts (its mark is ``origin - 1``).
    """

    def __init__(self, name: str, model, origin_ns: int):
        self.name = name
        self.model = model
        self.version = model.version
        self.period_ns = float(model.period_ns or 0.0)
        self.origin_ns = int(origin_ns)
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.last = np.empty(0, np.int64)
        self.origin = np.empty(0, np.int64)
        self.prev_t = np.empty(0, np.int64)
        self.n_samples = np.empty(0, np.int64)
        self.checked = np.empty(0, bool)
        self.steps = np.empty((0, N_STEPS))
        self.n_steps = np.empty(0, np.int64)
        self.blocks = [make_block(d) for d in model.enabled]
        self.open = np.empty((0, len(self.blocks)), bool)
        """Per row and detector: the alarm was on at its last output (or unknown)."""
        self.quarantined: dict[int, str] = {}
        self.late: LateCounter | None = None

    def __len__(self) -> int:
        return len(self.keys)

    # -- rows -------------------------------------------------------------
    def add(self, keys, origin_ns: int | None = None) -> None:
        """Add the keys not known yet (their mark stands just before ``origin_ns``)."""
        new = [k for k in dict.fromkeys(keys) if k not in self.index]
        if not new:
            return
        o = self.origin_ns if origin_ns is None else int(origin_ns)
        n0, m = len(self.keys), len(new)
        for i, k in enumerate(new):
            self.index[k] = n0 + i
        self.keys += new
        self.last = np.concatenate([self.last, np.full(m, o - 1, np.int64)])
        self.origin = np.concatenate([self.origin, np.full(m, o, np.int64)])
        self.prev_t = np.concatenate([self.prev_t, np.full(m, NONE, np.int64)])
        self.n_samples = np.concatenate([self.n_samples, np.zeros(m, np.int64)])
        self.checked = np.concatenate([self.checked, np.zeros(m, bool)])
        self.steps = np.concatenate([self.steps, np.zeros((m, N_STEPS))])
        self.n_steps = np.concatenate([self.n_steps, np.zeros(m, np.int64)])
        self.open = np.concatenate([self.open, np.ones((m, len(self.blocks)), bool)])
        for b in self.blocks:
            b.grow(len(self.keys))
        self._name_rows()
        if self.late is not None:
            self.late.grow(len(self.keys))

    def rows_of(self, keys) -> np.ndarray:
        """The row of each key (``-1`` for keys not in the fleet)."""
        get = self.index.get
        return np.fromiter((get(k, -1) for k in keys), np.int64, len(keys))

    def active(self) -> np.ndarray:
        """Rows that are not quarantined."""
        ok = np.ones(len(self.keys), bool)
        if self.quarantined:
            ok[list(self.quarantined)] = False
        return ok

    def restart_states(self) -> None:
        """Fresh detector states for every key (a retrained model); marks stay."""
        n = len(self.keys)
        self.blocks = [make_block(d, n) for d in self.model.enabled]
        self.prev_t = np.full(n, NONE, np.int64)
        self.steps = np.zeros((n, N_STEPS))
        self.checked = np.zeros(n, bool)
        self.n_steps = np.zeros(n, np.int64)
        self.open = np.ones((n, len(self.blocks)), bool)
        self._name_rows()

    def _name_rows(self) -> None:
        """Tell the blocks that compare keys (the fleet detector's) which key each row is."""
        for b in self.blocks:
            b.set_keys(self.keys)

    # -- checks -----------------------------------------------------------
    def duplicate_groups(self, b: Batch) -> np.ndarray:
        """Groups with two points at one timestamp (several series under one key)."""
        if len(b) < 2:
            return np.zeros(len(b.rows), bool)
        same = b.times[1:] <= b.times[:-1]
        same[b.starts[1:-1] - 1] = False  # a step between two groups is not a step
        bad = np.zeros(len(b.rows), bool)
        if same.any():
            gid = np.searchsorted(b.starts, np.flatnonzero(same), side="right") - 1
            bad[gid] = True
        return bad

    def period_problems(self, b: Batch) -> dict[int, float]:
        """Collect steps of keys not checked yet; return ``{group: observed period}`` of those
        whose first :data:`N_STEPS` steps have a median more than 1 % off the model's period."""
        if not self.period_ns or len(b) == 0:
            return {}
        todo = ~self.checked[b.rows]
        if not todo.any():
            return {}
        lengths = b.lengths
        pm = np.repeat(todo, lengths)
        gid = np.repeat(np.arange(len(b.rows)), lengths)[pm]
        t = b.times[pm]
        rows = b.rows[gid]
        first = np.ones(len(t), bool)
        first[1:] = gid[1:] != gid[:-1]
        prev = np.empty(len(t), np.int64)
        prev[1:] = t[:-1]
        prev[first] = self.prev_t[rows[first]]
        valid = prev != NONE
        step = np.where(valid, t - np.where(valid, prev, 0), 0).astype(np.float64)
        # rank of each valid step within its group, after the steps collected before
        cum = np.cumsum(valid)
        base = np.maximum.accumulate(np.where(first, np.arange(len(t)), 0))
        before = cum[base] - valid[base]
        rank = self.n_steps[rows] + (cum - before) - 1
        put = valid & (rank < N_STEPS)
        self.steps[rows[put], rank[put]] = step[put]
        got = np.bincount(gid[valid], minlength=len(b.rows))
        g_todo = np.flatnonzero(todo)
        r_todo = b.rows[g_todo]
        self.n_steps[r_todo] = np.minimum(N_STEPS, self.n_steps[r_todo] + got[g_todo])
        full = self.n_steps[r_todo] >= N_STEPS
        out = {}
        if full.any():
            med = np.median(self.steps[r_todo[full]], axis=1)
            off = np.abs(med / self.period_ns - 1) > PERIOD_TOL
            for g, m, o in zip(g_todo[full].tolist(), med.tolist(), off.tolist(), strict=True):
                if o:
                    out[g] = m
            self.checked[r_todo[full][~off]] = True
        return out

    # -- scoring ------------------------------------------------------------
    def score(self, b: Batch) -> list:
        """Every block's output for the batch, then move the marks; see the module docstring."""
        outs = [blk.update(b.rows, b.starts, b.times, b.values) for blk in self.blocks]
        last = b.starts[1:] - 1
        self.last[b.rows] = np.maximum(self.last[b.rows], b.times[last])
        self.prev_t[b.rows] = b.times[last]
        self.n_samples[b.rows] += b.lengths
        if self.late is not None:
            self.late.record(b)
        return outs

    def finish(self) -> list:
        """Every block's held-back output at the end of the data (a cross-key detector's open
        time bins); an empty output for the blocks that hold nothing back."""
        return [blk.finish() for blk in self.blocks]

    # -- data ---------------------------------------------------------------
    def get_data(self) -> tuple[dict, dict]:
        arrays = {"last": self.last, "origin": self.origin, "prev_t": self.prev_t,
                  "n_samples": self.n_samples, "checked": self.checked,
                  "n_steps": self.n_steps, "open": self.open}
        if not self.checked.all():
            arrays["steps"] = self.steps
        dets = []
        for i, blk in enumerate(self.blocks):
            meta, arr = blk.get_data()
            dets.append({"name": blk.det.name, "state": meta})
            arrays.update({f"d{i}.{k}": a for k, a in arr.items()})
        meta = {"series": self.name, "keys": self.keys, "origin_ns": self.origin_ns,
                "model_version": self.version, "detectors": dets}
        return meta, arrays

    def set_data(self, meta: dict, arrays: dict, states: bool = True) -> None:
        """Restore :meth:`get_data` (raises ``ValueError``/``KeyError``/``TypeError`` if it
        does not fit this model); ``states=False`` keeps the marks only (a retrained model:
        the detectors restart)."""
        keys = meta["keys"]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("keys must be a list of strings")
        n = len(keys)
        if len(set(keys)) != n:
            raise ValueError("duplicate keys")

        def arr(name, dtype, shape):
            a = arrays[name]
            if a.dtype != dtype or a.shape != shape:
                raise ValueError(f"array {name!r} is not {np.dtype(dtype)} {shape}")
            return np.array(a)

        self.keys = list(keys)
        self.index = {k: i for i, k in enumerate(keys)}
        self.origin_ns = int(meta["origin_ns"])
        self.last = arr("last", np.int64, (n,))
        self.origin = arr("origin", np.int64, (n,))
        self.n_samples = arr("n_samples", np.int64, (n,))
        self.checked = np.zeros(n, bool)
        self.n_steps = np.zeros(n, np.int64)
        self.quarantined = {}
        if self.late is not None:
            self.late = LateCounter(self.late.width_ns, self.late.n_buckets, n)
        if not states:
            self.open = np.ones((n, len(self.blocks)), bool)
            self.restart_states()
            return
        self.prev_t = arr("prev_t", np.int64, (n,))
        self.checked = arr("checked", bool, (n,))
        self.n_steps = arr("n_steps", np.int64, (n,))
        self.open = arr("open", bool, (n, len(self.blocks)))
        self.steps = arr("steps", np.float64, (n, N_STEPS)) if "steps" in arrays \
            else np.zeros((n, N_STEPS))
        names = [d["name"] for d in meta["detectors"]]
        if names != [b.det.name for b in self.blocks]:
            raise ValueError(f"its detectors {names} differ from the model's "
                             f"{[b.det.name for b in self.blocks]}")
        for i, (blk, d) in enumerate(zip(self.blocks, meta["detectors"], strict=True)):
            pre = f"d{i}."
            blk.set_data(d["state"], {k[len(pre):]: a for k, a in arrays.items()
                                      if k.startswith(pre)}, n)
        self._name_rows()

    def observed_period(self) -> float | None:
        """The median step collected by the period check so far (None before any)."""
        rows = np.flatnonzero(self.n_steps > 0)[:64]
        if len(rows) == 0:
            return None
        vals = np.concatenate([self.steps[r, :self.n_steps[r]] for r in rows.tolist()])
        return float(np.median(vals))


class LateCounter:
    """Points scored per key and bucket of data time, to find points that arrived late.

    ``n_buckets`` buckets of ``width_ns`` are remembered per key (a ring);
    only the buckets a key has seen whole in this process are checked
    (``first``), so a restart never counts the points scored before it as late.
    """

    def __init__(self, width_ns: int, n_buckets: int, n: int = 0):
        self.width_ns = int(width_ns)
        self.n_buckets = int(n_buckets)
        self.bucket = np.empty((0, n_buckets), np.int64)
        self.count = np.empty((0, n_buckets), np.int64)
        self.first = np.empty(0, np.int64)
        self.grow(n)

    def grow(self, n: int) -> None:
        m = n - len(self.first)
        if m <= 0:
            return
        self.bucket = np.concatenate([self.bucket, np.full((m, self.n_buckets), NONE, np.int64)])
        self.count = np.concatenate([self.count, np.zeros((m, self.n_buckets), np.int64)])
        self.first = np.concatenate([self.first, np.full(m, NONE, np.int64)])

    def record(self, b: Batch) -> None:
        """Count the batch's points per (key, bucket)."""
        if len(b) == 0:
            return
        rows = b.point_rows()
        bk = b.times // self.width_ns
        brk = np.ones(len(bk), bool)
        brk[1:] = (bk[1:] != bk[:-1]) | (rows[1:] != rows[:-1])
        at = np.flatnonzero(brk)
        n = np.diff(np.append(at, len(bk)))
        r, k = rows[at], bk[at]
        slot = k % self.n_buckets
        new = self.bucket[r, slot] != k
        self.count[r[new], slot[new]] = 0
        self.bucket[r, slot] = k
        self.count[r, slot] += n
        fresh = self.first[b.rows] == NONE  # the first bucket may hold points scored before
        if fresh.any():
            self.first[b.rows[fresh]] = b.times[b.starts[:-1][fresh]] // self.width_ns + 1

    def skip_to(self, rows, times) -> None:
        """Buckets up to ``times`` of ``rows`` are not checked (malformed points were there)."""
        rows = np.asarray(rows, np.int64)
        self.first[rows] = np.maximum(self.first[rows], np.asarray(times, np.int64)
                                      // self.width_ns + 1)

    def window(self, last: np.ndarray, rows: np.ndarray):
        """``(lo, hi)`` bucket indices to check per row: the closed buckets still remembered."""
        hi = last[rows] // self.width_ns  # the bucket holding the mark is still open
        lo = np.maximum(self.first[rows], hi - self.n_buckets + 1)
        return lo, hi

    def compare(self, rows, buckets, counts) -> np.ndarray:
        """Late points per entry of InfluxDB's ``(row, bucket, count)``; remembers the counts."""
        slot = buckets % self.n_buckets
        ours = np.where(self.bucket[rows, slot] == buckets, self.count[rows, slot], 0)
        late = np.maximum(0, counts - ours)
        self.bucket[rows, slot] = buckets
        self.count[rows, slot] = np.maximum(counts, ours)
        return late


def factorize(groups) -> tuple[np.ndarray, list]:
    """Codes and unique values of a read's group column (``pd.factorize``)."""
    codes, uniques = pd.factorize(groups, use_na_sentinel=False)
    return codes.astype(np.int64), [str(u) for u in uniques]
